// WebGPU device acquisition (runtime/webgpu/device.ts) against the real
// adapter: Dawn (`webgpu` npm package) on a GPU, or Mesa lavapipe on a CPU-only
// machine. Skipped where no adapter exists, unless KILN_REQUIRE_WEBGPU=1.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  adapterInfo,
  available,
  getDevice,
  getDeviceSync,
  init,
  limits,
  onUncapturedError,
  takeUncapturedErrors,
  throwIfUncapturedErrors,
} from '../runtime/webgpu/device.ts';

const required = process.env.KILN_REQUIRE_WEBGPU === '1';
const ok = await available();

describe('webgpu device', () => {
  it('is available when KILN_REQUIRE_WEBGPU=1', async () => {
    if (required) expect(ok).toBe(true);
    // available() never throws and is stable.
    expect(await available()).toBe(ok);
  });

  describe.runIf(ok || required)('with an adapter', () => {
    it('acquires one cached device', async () => {
      await init();
      const d = await getDevice();
      expect(await getDevice()).toBe(d);
      expect(getDeviceSync()).toBe(d);
      const info = adapterInfo();
      for (const k of ['vendor', 'architecture', 'device', 'description'] as const) {
        expect(typeof info[k]).toBe('string');
      }
      const l = limits();
      // The WebGPU spec's defaults are the floor; we ask for the adapter's maxima.
      expect(l.maxStorageBuffersPerShaderStage).toBeGreaterThanOrEqual(8);
      expect(l.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
      expect(l.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
      expect(l.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(134217728);
    });

    it('runs a WGSL compute shader and reads the result back', async () => {
      const device = await getDevice();
      const code = /* wgsl */ `
        @group(0) @binding(0) var<storage, read> a: array<f32>;
        @group(0) @binding(1) var<storage, read> b: array<f32>;
        @group(0) @binding(2) var<storage, read_write> c: array<f32>;
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) gid: vec3u) {
          let i = gid.x;
          if (i < arrayLength(&c)) { c[i] = a[i] + b[i]; }
        }`;
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ code, label: 'add8' });
      const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      expect(await device.popErrorScope()).toBeNull();

      const n = 8;
      const a = Float32Array.from({ length: n }, (_, i) => i + 0.5);
      const b = Float32Array.from({ length: n }, (_, i) => 10 * i);
      const storage = (data?: Float32Array<ArrayBuffer>) => {
        const buf = device.createBuffer({
          size: n * 4,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
        });
        if (data) device.queue.writeBuffer(buf, 0, data);
        return buf;
      };
      const A = storage(a);
      const B = storage(b);
      const C = storage();
      const R = device.createBuffer({ size: n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [A, B, C].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(1);
      pass.end();
      enc.copyBufferToBuffer(C, 0, R, 0, n * 4);
      device.queue.submit([enc.finish()]);
      await R.mapAsync(GPUMapMode.READ);
      const out = new Float32Array(R.getMappedRange().slice(0));
      R.unmap();
      expect(Array.from(out)).toEqual(Array.from(a, (x, i) => x + b[i]!));
      for (const buf of [A, B, C, R]) buf.destroy();
      throwIfUncapturedErrors('add8');
    });

    it('reports WGSL compile errors as values', async () => {
      const device = await getDevice();
      takeUncapturedErrors();
      const bad = '@compute @workgroup_size(1)\nfn main() {\n  let x: f32 = 1.0;\n  x = 2.0;\n}\n';

      // 1. An error scope around createShaderModule captures the WGSL error itself.
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ code: bad, label: 'bad' });
      const err = await device.popErrorScope();
      expect(err).not.toBeNull();
      expect(err!.constructor.name).toBe('GPUValidationError');
      expect(err!.message).toMatch(/cannot assign to 'let x'/);

      // 2. getCompilationInfo() lists the messages with line/column.
      const info = await module.getCompilationInfo();
      const errors = info.messages.filter((m) => m.type === 'error');
      expect(errors.length).toBeGreaterThan(0);
      expect(errors[0]!.lineNum).toBe(4);
      expect(errors[0]!.message).toMatch(/cannot assign/);

      // 3. An error scope around createComputePipeline catches the failure too, but
      //    its message only says the module is invalid (not the WGSL diagnostic).
      device.pushErrorScope('validation');
      device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const perr = await device.popErrorScope();
      expect(perr).not.toBeNull();
      expect(perr!.message).toMatch(/Invalid ShaderModule/);

      // 4. createComputePipelineAsync rejects with a GPUPipelineError.
      await expect(
        device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } }),
      ).rejects.toMatchObject({ reason: 'validation' });

      // 5. Without a scope the error reaches the 'uncapturederror' listener, which records
      //    it and passes it to onUncapturedError() listeners.
      const seen: GPUError[] = [];
      const off = onUncapturedError((e) => seen.push(e));
      try {
        device.createShaderModule({ code: bad, label: 'bad-uncaptured' });
        await device.queue.onSubmittedWorkDone();
        for (let i = 0; i < 50 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      } finally {
        off();
      }
      expect(seen.length).toBe(1);
      expect(seen[0]!.message).toMatch(/cannot assign to 'let x'/);
      expect(() => throwIfUncapturedErrors('bad shader')).toThrow(/cannot assign to 'let x'/);
      expect(takeUncapturedErrors()).toEqual([]);
    });

    it('lets the Node process exit after using the device', () => {
      const dir = mkdtempSync(join(tmpdir(), 'kiln-webgpu-exit-'));
      try {
        const deviceModule = resolve(import.meta.dirname, '../runtime/webgpu/device.ts');
        const script = join(dir, 'child.mts'); // .mts: ESM (top-level await) outside the package
        writeFileSync(
          script,
          `import * as w from ${JSON.stringify(deviceModule)};
let syncError = '';
try { w.getDeviceSync(); } catch (e) { syncError = (e as Error).message; }
const device = await w.getDevice();
const buf = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
await buf.mapAsync(GPUMapMode.READ);
console.log(JSON.stringify({ syncError, mapped: buf.mapState }));
// No destroy(): the process must still exit on its own.
`,
        );
        const r = spawnSync(process.execPath, ['--import', 'tsx', script], {
          encoding: 'utf8',
          timeout: 60_000,
          cwd: resolve(import.meta.dirname, '..'),
        });
        expect(r.error).toBeUndefined(); // a hang would be killed by the timeout (ETIMEDOUT)
        expect(r.status, r.stderr).toBe(0);
        const line = JSON.parse(r.stdout.trim().split('\n').pop()!);
        expect(line.mapped).toBe('mapped');
        expect(line.syncError).toMatch(/await kiln\.webgpu\.init\(\)/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
