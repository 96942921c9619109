// Eager elementwise fusion (runtime/eager-fusion.ts) and the WebGPU pieces it relies on: arena slots
// for tiny results and reused bind groups (runtime/webgpu/pool.ts, backend.ts).
//
// The group itself is device-neutral: its splitting by the kernel argument limit is checked on the CPU
// backend with a pretend limit. On WebGPU every program runs twice, fused and unfused (setEagerFusion),
// and must give the same bits.

import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import type { Target } from '../compiler/target.ts';
import { cpuBackend } from '../runtime/cpu.ts';
import type { KernelSpec } from '../ir/kernel.ts';
import { contiguousView } from '../ir/view.ts';
import { ElementwiseGroup } from '../runtime/eager-fusion.ts';
import { BufferPool, type Block } from '../runtime/webgpu/pool.ts';
import { eagerFusionStats, poolStats, setEagerFusion, sync, trimPool, webgpuBackend } from '../runtime/webgpu/backend.ts';
import { testDevices } from './devices.ts';
import { expectValues, TOL } from './golden.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
/** Collects garbage and lets finalizers (which return buffers to the pool) run. */
async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A WebGPU-like target allowing `maxArgs` buffers per kernel (only the limit matters to the group). */
const limitedTarget = (maxArgs: number): Target => ({
  language: 'wgsl',
  limits: { maxStorageBuffersPerShaderStage: maxArgs, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupStorageSize: 16384, maxComputeWorkgroupsPerDimension: 65535, subgroupMinSize: 0 },
  options: {},
  matmul: [],
});

describe('eager fusion: the group (on the CPU backend)', () => {
  const operand = (t: kiln.Tensor) => ({ storage: t._storage!, view: t._view, dtype: t.dtype });

  it('runs a new structure op by op, then fused within the argument limit, computing what one-op kernels compute', async () => {
    const specs: KernelSpec[] = [];
    const group = new ElementwiseGroup({
      target: () => limitedTarget(5),
      alloc: (dtype, size) => cpuBackend.alloc(dtype, size),
      prepare: (spec) => { specs.push(spec); return cpuBackend.prepare(spec); },
    });
    const xs = [1, 2, 3, 4, 5, 6].map((k) => kiln.tensor([k, -k, k / 2]));
    const run = () => {
      // acc = ((x0 * x1 + x2) * x3 + x4) * x5, then relu and a comparison: 6 inputs, 8 results
      const out = { shape: [3], dtype: 'float32' as const };
      let acc = group.record('mul', {}, [operand(xs[0]), operand(xs[1])], out);
      const results = [acc];
      for (let i = 2; i < 6; i++) {
        const prev = { storage: acc, view: contiguousView([3]), dtype: 'float32' as const };
        acc = group.record(i % 2 ? 'mul' : 'add', {}, [prev, operand(xs[i])], out);
        results.push(acc);
      }
      const last = { storage: acc, view: contiguousView([3]), dtype: 'float32' as const };
      results.push(group.record('relu', {}, [last], out));
      results.push(group.record('gt', {}, [last, operand(xs[0])], { shape: [3], dtype: 'bool' }));
      expect(group.pending).toBe(true);
      group.flush();
      expect(group.pending).toBe(false);
      return results.map((s) => Array.from(cpuBackend.readSync(s, 0, 3, 'data()')));
    };
    const x = xs;
    const chain = [x[0].mul(x[1])];
    for (let i = 2; i < 6; i++) chain.push(i % 2 ? chain[chain.length - 1].mul(x[i]) : chain[chain.length - 1].add(x[i]));
    const want = [...chain, chain[4].relu(), chain[4].gt(x[0])].map((t) => Array.from(t.dataSync()));
    // first seen: one kernel per op, named and laid out as the op's own eager kernel
    expect(run()).toEqual(want);
    expect(specs.map((sp) => sp.name)).toEqual(['mul_3', 'add_3', 'mul_3', 'add_3', 'mul_3', 'relu_3', 'gt_3']);
    expect(group.stats).toMatchObject({ ops: 7, compiled: 0, flushes: 1, kernels: 7 });
    // seen again: fused, split so that no kernel binds more than 5 buffers
    expect(run()).toEqual(want);
    const fused = specs.slice(7);
    expect(fused.length).toBeGreaterThan(1);
    expect(fused.length).toBeLessThan(7);
    for (const sp of fused) expect(sp.args.length).toBeLessThanOrEqual(5);
    expect(group.stats).toMatchObject({ ops: 14, compiled: 1, flushes: 2, kernels: 7 + fused.length });
    // and again: the same kernels, nothing new prepared
    expect(run()).toEqual(want);
    expect(specs.length).toBe(7 + fused.length);
    expect(group.stats.kernels).toBe(7 + 2 * fused.length);
  });
});

const hasWebGPU = (await testDevices()).includes('webgpu');

/** Runs `program` eagerly on WebGPU with fusion off, then on twice (a new structure runs fused the second time); the last run's results and counters. */
async function bothWays(program: () => kiln.Tensor[]): Promise<{ unfused: number[][]; fused: number[][]; kernels: number; ops: number }> {
  setEagerFusion(false);
  const unfused = await Promise.all(program().map(async (t) => Array.from(await t.data(), Number)));
  setEagerFusion(true);
  await Promise.all(program().map((t) => t.data()));
  const before = eagerFusionStats()!;
  const outs = program();
  await sync();
  const after = eagerFusionStats()!;
  const fused = await Promise.all(outs.map(async (t) => Array.from(await t.data(), Number)));
  return { unfused, fused, kernels: after.kernels - before.kernels, ops: after.ops - before.ops };
}

/**
 * Fused results against unfused ones: equal within the golden tolerance (NaN where NaN), and how many
 * are bit-for-bit equal. Not all need be: the shader compiler may simplify across ops it sees in one
 * kernel (lavapipe folds log(exp(x)) to x: -0 stays -0 where exp then log gives +0), as in compiled steps.
 */
function compare(name: string, fused: number[][], unfused: number[][]): { exact: number; total: number } {
  expect(fused.length).toBe(unfused.length);
  let exact = 0, total = 0;
  fused.forEach((xs, i) => {
    expectValues(xs, unfused[i], TOL, `${name}: result ${i}`);
    const fa = new Uint32Array(new Float32Array(xs).buffer), fb = new Uint32Array(new Float32Array(unfused[i]).buffer);
    fa.forEach((bits, j) => { total++; if (bits === fb[j]) exact++; });
  });
  return { exact, total };
}

describe.runIf(hasWebGPU)('eager fusion on webgpu', () => {
  const dev = { device: 'webgpu' as const };
  const t = (v: number | number[] | number[][], o: Partial<kiln.TensorOptions> = {}) => kiln.tensor(v, { ...dev, ...o });

  it('fused chains give the values of one kernel per op (floats, ints, bools, casts, broadcasts, views)', async () => {
    const programs: [string, () => kiln.Tensor[]][] = [
      ['scalar chain', () => {
        const x = t(0.5), w = t(1.7), b = t(-0.85);
        const h = x.mul(w).add(b).relu().mul(t(-40.8));
        return [h, h.exp().log(), h.sigmoid().tanh(), h.div(3).sqrt(), h.pow(2).sub(1)];
      }],
      ['vectors with a broadcast scalar and a slice', () => {
        const a = t([1, -2, 3, NaN, 0, -0]), s = t(2.5);
        const c = a.mul(s).add(a.index([1, 4]).sum()).abs();
        return [c, c.neg().maximum(a), c.minimum(a).sign(), kiln.where(a.gt(0), a, s.expand([6]))];
      }],
      ['ints and bools', () => {
        const i = t([1, 2, 3, 4], { dtype: 'int32' }), j = t([4, 3, 2, 1], { dtype: 'int32' });
        const k = i.mul(j).add(i).sub(7);
        const m = k.gt(0).logicalAnd(j.lt(3));
        return [k, m, k.float().div(3), m.int().add(k), k.eq(j).float()];
      }],
      ['a 2-D chain through a permuted view', () => {
        const a = t([[1, 2, 3], [4, 5, 6]]), b = t([[0.5, -1], [2, 3], [-4, 0.25]]);
        const c = a.mul(b.T).add(1).relu();
        return [c, c.mul(c).sub(a), c.T.add(b)];
      }],
      ['autograd through a fused chain', () => {
        const w = t([0.3, -1.2, 2.0], { requiresGrad: true }), x = t([1, 2, 3]);
        const loss = x.mul(w).add(0.1).relu().pow(2).sum();
        loss.backward();
        return [loss, w.grad!];
      }],
      ['an in-place update between fused ops', () => {
        const p = t([1, 2, 3, 4]), g = t([0.5, 0.25, -1, 2]);
        const q = p.mul(2);
        kiln.noGrad(() => { p.sub_(g.mul(0.1)); });
        return [q, p, p.add(q)];
      }],
      ['in-place writes read before through another layout, and after', () => {
        const p = t([[1, 2], [3, 4]]), q = t([[0.5, 0.5], [2, 2]]);
        const before = p.T.mul(q).add(p); // reads p transposed: the write below must not overtake it
        kiln.noGrad(() => { p.add_(10); q.mul_(p); });
        const after = p.mul(2).add(q);
        const r = kiln.zeros([2, 2], dev);
        kiln.noGrad(() => { r.copy_(after); r.add_(before.T); });
        return [before, p, q, after, r];
      }],
      ['a chain using each result twice (x = (x * x + x) / 2): expression trees stay bounded', () => {
        let x = t([0.5, 0.25, 0.9]);
        for (let i = 0; i < 40; i++) x = x.mul(x).add(x).mul(0.5);
        return [x];
      }],
      ['more inputs than one kernel may bind', () => {
        const xs = Array.from({ length: 24 }, (_, k) => t([k + 1, -k, k * 0.5]));
        let acc = xs[0];
        for (const x of xs.slice(1)) acc = acc.mul(0.5).add(x);
        return [acc, acc.relu()];
      }],
    ];
    let exact = 0, total = 0;
    for (const [name, program] of programs) {
      const r = await bothWays(program);
      const c = compare(name, r.fused, r.unfused);
      exact += c.exact;
      total += c.total;
      expect(r.ops, name).toBeGreaterThan(0);
      expect(r.kernels, name).toBeLessThan(r.ops);
    }
    // the exp().log() of -0 above is the one value allowed to differ in its bits
    expect(exact).toBeGreaterThanOrEqual(total - 1);
  });

  it('the dose epoch (seeds/000) launches one kernel per sample once warm and trains as unfused does', async () => {
    const stats: { ops: number; kernels: number }[] = [];
    const epoch = async (epochs: number, counts?: typeof stats) => {
      const s = (v: number) => t(v);
      const w00 = s(1.7), b00 = s(-0.85), w01 = s(-40.8), w10 = s(12.6), b10 = s(0), w11 = s(2.7);
      const bias = t(0, { requiresGrad: true });
      const inputs = t([0, 0.5, 1]), labels = t([0, 1, 0]);
      const opt = new kiln.optim.SGD([bias], { lr: 0.1 });
      const losses: number[] = [];
      for (let e = 0; e < epochs; e++) {
        const s0 = eagerFusionStats()!;
        for (let i = 0; i < 3; i++) {
          const x = inputs.index(i);
          const y = x.mul(w00).add(b00).relu().mul(w01).add(x.mul(w10).add(b10).relu().mul(w11)).add(bias).relu();
          const loss = y.sub(labels.index(i)).pow(2);
          loss.backward();
          losses.push(await loss.item());
        }
        opt.step();
        opt.zeroGrad();
        await sync();
        const s1 = eagerFusionStats()!;
        counts?.push({ ops: s1.ops - s0.ops, kernels: s1.kernels - s0.kernels });
      }
      return [...losses, await bias.item()];
    };
    setEagerFusion(false);
    const unfused = await epoch(4);
    setEagerFusion(true);
    const fused = await epoch(4, stats);
    const c = compare('dose', [fused], [unfused]);
    expect(c.exact).toBe(c.total);
    expect(fused[0] + fused[1] + fused[2]).toBeCloseTo(256.32, 1); // the first epoch's total (bench/README.md)
    expect(stats.map((x) => x.ops)).toEqual([79, 79, 79, 79]);
    // Epoch 1 meets samples 1 and 2 (op by op; sample 3 is sample 2 again: fused) and the step; epoch 2
    // the step and sample 2 once more; from epoch 3 on, one kernel per sample and one for the step
    // (launched alone by the sync() above; bench/dose.ts's loop has the step join sample 1's kernel)
    expect(stats[0].kernels).toBeGreaterThan(2 * 24);
    expect(stats.slice(2).map((x) => x.kernels)).toEqual([4, 4]);
  });

  it('shape and dtype errors are raised at the op, and the ops recorded before it still run', async () => {
    const a = t([1, 2, 3]);
    const b = a.mul(2).add(1);
    expect(() => b.add(t([1, 2, 3, 4]))).toThrow(/add.*\[3\].*\[4\]|shape/i);
    expect(() => b.add(kiln.tensor([1, 2, 3]))).toThrow(/same device/);
    expect(Array.from(await b.data())).toEqual([3, 5, 7]);
  });

  it('kiln.memory() counts a recorded result at once', async () => {
    const a = t([1, 2, 3, 4, 5, 6, 7, 8]);
    await sync();
    const m0 = kiln.memory().webgpu;
    const b = a.mul(2);
    const m1 = kiln.memory().webgpu;
    expect(m1.storages - m0.storages).toBe(1);
    expect(m1.bytes - m0.bytes).toBe(32);
    expect(Array.from(await b.data())).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
  });

  it('tiny results live in arena slots: reads, in-place writes, host writes and compiled steps see only their own slot', async () => {
    const a = t([1, 2, 3]), b = t([10, 20, 30]);
    const x = a.add(b), y = a.mul(b), z = a.sub(b);
    const [sx, sy] = [x._storage as unknown as { buffer: GPUBuffer; base: number }, y._storage as unknown as { buffer: GPUBuffer; base: number }];
    await sync();
    expect(sx.buffer).toBe(sy.buffer); // one arena
    expect(sx.base).not.toBe(sy.base);
    kiln.noGrad(() => { y.mul_(2); });
    expect(Array.from(await x.data())).toEqual([11, 22, 33]);
    expect(Array.from(await y.data())).toEqual([20, 80, 180]);
    expect(Array.from(await z.data())).toEqual([-9, -18, -27]);
    webgpuBackend.write(x._storage!, new Float32Array([-1, -2, -3]));
    expect(Array.from(await x.data())).toEqual([-1, -2, -3]);
    expect(Array.from(await y.data())).toEqual([20, 80, 180]);
    expect(Array.from(await z.data())).toEqual([-9, -18, -27]);
    const step = kiln.compile((u: kiln.Tensor) => u.mul(y).add(z));
    expect(Array.from(await ((await step(t([1, 1, 1]))) as kiln.Tensor).data())).toEqual([11, 62, 153]);
    // an int32 and a bool result: arenas of their own (a shared binding has one element type)
    const i = t([1, 2, 3], { dtype: 'int32' }).add(t([1, 1, 1], { dtype: 'int32' }));
    const m = x.lt(y);
    expect((i._storage as unknown as { buffer: GPUBuffer }).buffer).not.toBe(sx.buffer);
    expect((m._storage as unknown as { buffer: GPUBuffer }).buffer).not.toBe(sx.buffer);
    expect(Array.from(await i.data())).toEqual([2, 3, 4]);
    expect(Array.from(await m.data())).toEqual([1, 1, 1]);
  });

  it('a cached bind group never serves a freed buffer: results stay right after buffers are collected, trimmed and reallocated', async () => {
    const n = 200; // 800 bytes: whole buffers, not arena slots
    const data = (k: number) => Float32Array.from({ length: n }, (_, i) => i * k);
    for (let round = 1; round <= 3; round++) {
      let a: kiln.Tensor | null = kiln.tensor(data(round), dev);
      let b: kiln.Tensor | null = kiln.tensor(data(2 * round), dev);
      let c: kiln.Tensor | null = a.add(b).mul(round);
      const got = await c.data();
      expect(got[7]).toBe(7 * 3 * round * round);
      a = b = c = null;
      await sync();
      await collect();
      const destroyed = poolStats()!.destroyed;
      trimPool();
      expect(poolStats()!.destroyed).toBeGreaterThan(destroyed);
      void [a, b, c];
    }
    // scalars: arena slots handed out again after collection
    const out: number[] = [];
    for (let k = 0; k < 50; k++) {
      out.push(await t(k).mul(2).add(1).item());
      if (k % 10 === 0) await collect();
    }
    expect(out).toEqual(Array.from({ length: 50 }, (_, k) => 2 * k + 1));
    expect(poolStats()!.reused).toBeGreaterThan(0);
  });
});

describe('buffer pool: arena slots (unit)', () => {
  const fakeDevice = () => {
    let made = 0;
    return { createBuffer: ({ size }: { size: number }) => ({ size, id: made++, destroy() { /* none */ } }) } as unknown as GPUDevice;
  };
  const id = (b: Block): number => (b.buffer as unknown as { id: number }).id;

  it('dtypes never share an arena; a released slot is reused only after its submission completed; trim keeps arenas', () => {
    const pool = new BufferPool(fakeDevice(), 1 << 20, 0);
    const f = pool.acquireSlot('float32', 12), g = pool.acquireSlot('float32', 4), i = pool.acquireSlot('int32', 4);
    expect(id(f)).toBe(id(g));
    expect(f.base).not.toBe(g.base);
    expect(id(i)).not.toBe(id(f));
    expect(pool.stats).toMatchObject({ arenas: 2, liveBuffers: 3, liveBytes: 48 });
    pool.release(f, 1);
    const h = pool.acquireSlot('float32', 16);
    expect(h.base).not.toBe(f.base); // submission 1 may still use f's slot
    pool.completedUpTo(1);
    const k = pool.acquireSlot('float32', 16);
    expect([id(k), k.base]).toEqual([id(f), f.base]);
    pool.trim();
    expect(pool.stats.destroyed).toBe(0);
    expect(() => pool.acquireSlot('float32', 1024)).toThrow(/at most 256 bytes/);
  });
});
