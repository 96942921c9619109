// kiln.memory(): live storages and bytes per device, counted as storages are created and collected
// (the report itself; flat memory over long loops is tested elsewhere).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { sync } from '../runtime/webgpu/backend.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Runs the collector until `done()` holds (finalizers run in a later task); 3 rounds when no condition is given. */
async function collectUntil(done?: () => boolean): Promise<void> {
  for (let i = 0; i < (done ? 20 : 3) && !done?.(); i++) {
    gc();
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('kiln.memory() [cpu]', () => {
  it('starts counting CPU storages with the first call, and says so', () => {
    const before = kiln.zeros([100]);
    const first = kiln.memory().cpu;
    expect(first).toEqual({ storages: 0, bytes: 0, cachedBytes: 0, tracked: false });
    expect(kiln.memory().cpu.tracked).toBe(true);
    void before;
  });

  it('counts from the start with KILN_TRACK_MEMORY=1', () => {
    const tsx = fileURLToPath(new URL('../node_modules/.bin/tsx', import.meta.url));
    const code = "import * as kiln from './index.ts'; const a = kiln.zeros([256]); console.log(JSON.stringify(kiln.memory().cpu));";
    const r = spawnSync(tsx, ['-e', code], { cwd: fileURLToPath(new URL('..', import.meta.url)), encoding: 'utf8', env: { ...process.env, KILN_TRACK_MEMORY: '1' } });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ storages: 1, bytes: 1024, cachedBytes: 0, tracked: true });
  });
});

describeEachDevice('kiln.memory()', (device) => {
  const mem = (): kiln.DeviceMemory => kiln.memory()[device];
  const settle = async (): Promise<void> => { if (device === 'webgpu') await sync(); };

  it('counts a new tensor and its bytes; views add nothing', async () => {
    kiln.memory();
    await settle();
    const m0 = mem();
    const a = kiln.zeros([256], { device });
    const b = kiln.zeros([12], { device, dtype: 'int32' });
    const m1 = mem();
    expect(m1.storages - m0.storages).toBe(2);
    // float32 and int32: 4 bytes an element (sizes WebGPU does not round up: multiples of 16 bytes)
    expect(m1.bytes - m0.bytes).toBe(1024 + 48);
    expect(m1.tracked).toBe(true);
    const views = [a.reshape([32, 8]), a.index([0, 10]), a.unsqueeze(0).expand([3, 256]), b.T];
    expect(mem().storages).toBe(m1.storages);
    expect(mem().bytes).toBe(m1.bytes);
    void views;
  });

  it('gives memory back when tensors are collected, and a loop that keeps nothing stays flat', async () => {
    kiln.memory();
    const x = kiln.randn([8, 16], { device });
    const w = kiln.randn([16, 4], { device }).requiresGrad_();
    const step = (): void => {
      const loss = x.matmul(w).relu().sum();
      loss.backward();
      kiln.noGrad(() => { w.sub_(w.grad!.mul(0.01)); });
      w.grad = null;
    };
    step();
    await settle();
    await collectUntil();
    const base = mem();
    for (let i = 0; i < 30; i++) step();
    await settle();
    await collectUntil(() => mem().storages <= base.storages);
    expect(mem().storages).toBe(base.storages);
    expect(mem().bytes).toBe(base.bytes);

    // one big tensor more while it is referenced, none once it is dropped
    let big: kiln.Tensor | null = kiln.ones([1000, 100], { device });
    expect(mem().storages).toBe(base.storages + 1);
    expect(mem().bytes - base.bytes).toBeGreaterThanOrEqual(400_000);
    big = null;
    await settle();
    await collectUntil(() => mem().storages <= base.storages);
    expect(mem().storages).toBe(base.storages);
    expect(mem().bytes).toBe(base.bytes);
    if (device === 'webgpu') expect(mem().cachedBytes).toBeGreaterThan(0); // the pool keeps the freed buffer for reuse
    void big;
  });

  it('shows a leak: tensors kept in an array (with their graphs) keep growing', async () => {
    kiln.memory();
    const w = kiln.randn([64], { device }).requiresGrad_();
    await settle();
    await collectUntil();
    const base = mem();
    const kept: kiln.Tensor[] = [];
    for (let i = 0; i < 10; i++) kept.push(w.mul(2).exp().sum()); // each loss holds its graph's tensors
    await settle();
    await collectUntil();
    const after = mem();
    expect(after.storages - base.storages).toBeGreaterThanOrEqual(10 * 3);
    expect(after.bytes - base.bytes).toBeGreaterThanOrEqual(10 * 2 * 64 * 4);
    expect(kept.length).toBe(10);
  });
});
