// WebGPU matmul variants, the per-adapter autotuner and the buffer pool.
//
// Every matmul variant the tuner may pick (and a few it would not) must match the CPU backend on odd
// shapes, every operand layout, batches, aligned and unaligned offsets, int32 and an epilogue. The
// tuner must cache per adapter + shape and persist to its JSON file, yield to the program's work, and
// KILN_AUTOTUNE=0 must turn it off.
// The pool must reuse buffers of collected tensors, never while queued work may still use them.

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testDevices } from './devices.ts';
import type { DType, TypedArray } from '../ir/dtype.ts';
import type { Expr, KernelSpec } from '../ir/kernel.ts';
import { contiguousView, permuteView, type View } from '../ir/view.ts';
import { lowerPrimitive } from '../compiler/lower.ts';
import { untunedMatmul } from '../compiler/target.ts';
import { DEFAULT_LIMITS, DEFAULT_MATMUL, matmulVariantFits, matmulVariantKey, wgslSource, type MatmulVariant } from '../compiler/codegen/wgsl.ts';
import { cpuBackend } from '../runtime/cpu.ts';
import { poolStats, setMatmulVariant, sync, webgpuBackend } from '../runtime/webgpu/backend.ts';
import { adapterKey, adapterPolicy, applicableVariants, cachedEntry, cachedVariant, chooseMatmul, clearAutotuneCache, defaultMatmul, isSoftwareAdapter, matmulCandidates, noteUserSubmit, quietQueue, requestTune, shapeKey, SOFTWARE_LANES4_MATMUL, SOFTWARE_LANES_MATMUL, SOFTWARE_LARGE_MATMUL, SOFTWARE_MATMUL, tunesSettled, tuneReports, worthTuning } from '../runtime/webgpu/autotune.ts';
import { BufferPool, sizeClass, type Block } from '../runtime/webgpu/pool.ts';
import { adapterInfo, getDeviceSync, limits, subgroupMinSize } from '../runtime/webgpu/device.ts';
import type { Storage } from '../runtime/device.ts';
import * as kiln from '../index.ts';

const hasWebGPU = (await testDevices()).includes('webgpu');

let seed = 777;
function rnd(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
}
const randF = (n: number): Float32Array => Float32Array.from({ length: n }, () => -2 + 4 * rnd());
const randI = (n: number): Int32Array => Int32Array.from({ length: n }, () => -5 + Math.floor(10 * rnd()));
const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
const extent = (v: View): number => v.offset + v.shape.reduce((acc, d, i) => acc + (d - 1) * v.strides[i], 1);
const T = (rows: number, cols: number): View => permuteView(contiguousView([cols, rows]), [1, 0]); // [rows, cols], column-major

interface Case { label: string; spec: KernelSpec; data: TypedArray[]; offsets: number[]; exact?: boolean }

function matmulCase(label: string, batch: number[], m: number, k: number, n: number, a: View, b: View, offA = 0, offB = 0, dtype: DType = 'float32'): Case {
  const spec = lowerPrimitive('matmul', {}, [{ view: a, dtype }, { view: b, dtype }], { shape: [...batch, m, n], dtype })[0];
  const gen = (len: number) => (dtype === 'float32' ? randF(len) : randI(len));
  const pad = (x: TypedArray, off: number): TypedArray => {
    const out = dtype === 'float32' ? new Float32Array(off + x.length) : new Int32Array(off + x.length);
    out.set(x, off);
    return out;
  };
  const out = dtype === 'float32' ? new Float32Array(numel([...batch, m, n])) : new Int32Array(numel([...batch, m, n]));
  return { label, spec, data: [pad(gen(extent(a)), offA), pad(gen(extent(b)), offB), out], offsets: [offA, offB, 0], exact: dtype !== 'float32' };
}

function epilogueCase(): Case {
  const [m, k, n] = [10, 12, 9];
  const acc: Expr = { kind: 'acc', dtype: 'float32' };
  const bias: Expr = { kind: 'load', arg: 2, view: { shape: [m, n], strides: [0, 1], offset: 0 }, dtype: 'float32' };
  const epi: Expr = { kind: 'unary', op: 'relu', x: { kind: 'binary', op: 'add', a: acc, b: bias, dtype: 'float32' }, dtype: 'float32' };
  const spec: KernelSpec = {
    name: 'linear_relu', params: 0, args: [{ dtype: 'float32', size: 0 }, { dtype: 'float32', size: 0 }, { dtype: 'float32', size: 0 }, { dtype: 'float32', size: m * n }],
    kernel: {
      kind: 'matmul', batch: [], m, n, k, a: { kind: 'load', arg: 0, view: contiguousView([m, k]), dtype: 'float32' },
      b: { kind: 'load', arg: 1, view: T(k, n), dtype: 'float32' }, epilogue: epi, output: { arg: 3, view: contiguousView([m, n]), dtype: 'float32' },
    },
  };
  return { label: 'epilogue bias + relu (NT)', spec, data: [randF(m * k), randF(k * n), randF(n), new Float32Array(m * n)], offsets: [0, 0, 0, 0] };
}

function cases(): Case[] {
  return [
    matmulCase('NN 37x53x29 (scalar loads)', [], 37, 53, 29, contiguousView([37, 53]), contiguousView([53, 29])),
    matmulCase('NN 33x20x20 (vec4 a along k, b along n)', [], 33, 20, 20, contiguousView([33, 20]), contiguousView([20, 20])),
    matmulCase('NT 33x20x18 (x @ w.T: b along k)', [], 33, 20, 18, contiguousView([33, 20]), T(20, 18)),
    matmulCase('TN 24x9x20 (a.T @ g: a along m)', [], 24, 9, 20, T(24, 9), contiguousView([9, 20])),
    matmulCase('TN 21x13x11 (a along m, odd)', [], 21, 13, 11, T(21, 13), contiguousView([13, 11])),
    matmulCase('TT 33x20x17', [], 33, 20, 17, T(33, 20), T(20, 17)),
    matmulCase('batched [3, 2] NT at aligned offsets', [3, 2], 5, 8, 9, contiguousView([3, 2, 5, 8]), permuteView(contiguousView([3, 2, 9, 8]), [0, 1, 3, 2]), 4, 8),
    matmulCase('NN 13x16x12 at unaligned offsets', [], 13, 16, 12, contiguousView([13, 16]), contiguousView([16, 12]), 2, 3),
    matmulCase('int32 batched [2] 9x11x6', [2], 9, 11, 6, contiguousView([2, 9, 11]), contiguousView([2, 11, 6]), 0, 0, 'int32'),
    matmulCase('1x1x1', [], 1, 1, 1, contiguousView([1, 1]), contiguousView([1, 1])),
    matmulCase('NN 70x64x66 (several tiles)', [], 70, 64, 66, contiguousView([70, 64]), contiguousView([64, 66])),
    matmulCase('batched [2] NN 7x12x20 (vec4 stores, rows past m, a last half vec4 block)', [2], 7, 12, 20, contiguousView([2, 7, 12]), contiguousView([2, 12, 20])),
    epilogueCase(),
  ];
}

async function runCase(c: Case): Promise<{ cpu: TypedArray; gpu: TypedArray }> {
  const cpuS: Storage[] = c.data.map((d) => cpuBackend.upload(d.slice()));
  const gpuS: Storage[] = c.data.map((d) => webgpuBackend.upload(d.slice()));
  cpuBackend.run([c.spec], cpuS.map((s, i) => ({ storage: s, offset: c.offsets[i] })));
  webgpuBackend.run([c.spec], gpuS.map((s, i) => ({ storage: s, offset: c.offsets[i] })));
  const o = c.data.length - 1;
  return { cpu: await cpuBackend.read(cpuS[o], 0, cpuS[o].size), gpu: await webgpuBackend.read(gpuS[o], 0, gpuS[o].size) };
}

function expectMatch(label: string, r: { cpu: TypedArray; gpu: TypedArray }, exact: boolean): void {
  expect(r.gpu.length).toBe(r.cpu.length);
  for (let i = 0; i < r.cpu.length; i++) {
    const a = r.cpu[i], b = r.gpu[i];
    if (exact ? a !== b : !(Math.abs(a - b) <= 1e-5 + 1e-5 * Math.abs(a))) throw new Error(`${label}: element ${i}: cpu ${a}, webgpu ${b}`);
  }
}

describe('matmul variants (codegen only)', () => {
  const spec = lowerPrimitive('matmul', {}, [{ view: contiguousView([64, 64]), dtype: 'float32' }, { view: contiguousView([64, 64]), dtype: 'float32' }], { shape: [64, 64], dtype: 'float32' })[0];
  it('the default is 4x4 blocks in 8x8 workgroups, without workgroup memory', () => {
    expect(DEFAULT_MATMUL).toEqual({ bm: 4, bn: 4, wg: [8, 8], vec4: true, tiled: false });
    const k = wgslSource(spec, { aligned: [true, true, true] });
    expect(k.code).toContain('@workgroup_size(8, 8)');
    expect(k.code).not.toContain('var<workgroup>');
    expect(k.workgroups).toEqual([2, 2, 1]);
  });
  it('a tiled variant stages tiles in workgroup memory; a one-row variant takes its rows from the workgroup id', () => {
    const t = wgslSource(spec, { aligned: [true, true, true], matmul: { bm: 4, bn: 4, wg: [16, 16], vec4: true, tiled: true } });
    expect(t.code).toContain('var<workgroup> tA');
    expect(t.code).toContain('workgroupBarrier()');
    expect(t.workgroups).toEqual([1, 1, 1]);
    const r = wgslSource(spec, { aligned: [true, true, true], matmul: { bm: 8, bn: 4, wg: [16, 1], vec4: true, tiled: false } });
    expect(r.code).toContain('let i0 = i32(wid.y) * 8;');
    expect(r.workgroups).toEqual([1, 8, 1]);
  });
  it('a lanes variant loads a once per subgroup and broadcasts it; it needs subgroups that hold its workgroup', () => {
    const odd = lowerPrimitive('matmul', {}, [{ view: contiguousView([64, 21]), dtype: 'float32' }, { view: contiguousView([21, 64]), dtype: 'float32' }], { shape: [64, 64], dtype: 'float32' })[0];
    const s = wgslSource(odd, { aligned: [true, true, true], matmul: SOFTWARE_LANES_MATMUL });
    expect(s.code).toMatch(/^enable subgroups;$/m);
    expect(s.code).toContain('@builtin(subgroup_invocation_id) sgl: u32');
    expect(s.code).toContain('let ka = kr * 8 + i32(sgl);');
    expect(s.code).toContain('subgroupBroadcast(av7, 7u)');
    // 21 = 2 rounds of 8 and a last one of 5 steps, whose lanes past k load a clamped step
    expect(s.code).toContain('let kn = 2 + min(ofs0, 0);');
    expect(s.code).toContain('let ka = min(16 + i32(sgl), 20);');
    const last = s.code.slice(s.code.indexOf('let ka = min('));
    expect(last).toContain('subgroupBroadcast(av0, 4u)');
    expect(last).not.toContain('subgroupBroadcast(av0, 5u)');
    // every lane takes part in the loads: only rows (uniform) return early, columns past n after the loop
    expect(s.code).toContain('if (i0 >= 64) { return; }');
    expect(s.code.indexOf('if (j0 >= 64) { return; }')).toBeGreaterThan(s.code.indexOf('for (var kr'));
    expect(s.workgroups).toEqual([2, 8, 1]);
    expect(wgslSource(spec, { aligned: [true, true, true] }).code).not.toContain('subgroups');
    const lim = { ...DEFAULT_LIMITS, subgroupMinSize: 4 };
    expect(matmulVariantFits(SOFTWARE_LANES_MATMUL, lim)).toBe(false);
    expect(matmulVariantFits(SOFTWARE_LANES_MATMUL, { ...lim, subgroupMinSize: 8 })).toBe(true);
    expect(matmulVariantFits(SOFTWARE_LANES_MATMUL, { ...lim, subgroupMinSize: 32 })).toBe(true);
    expect(matmulVariantKey(SOFTWARE_LANES_MATMUL)).toBe('r8x4@8x1v+sg8');
    expect(() => wgslSource(spec, { matmul: { ...SOFTWARE_LANES_MATMUL, wg: [8, 2] } })).toThrow(/unsupported matmul variant/);
    expect(() => wgslSource(spec, { matmul: { ...SOFTWARE_LANES_MATMUL, tiled: true } })).toThrow(/unsupported matmul variant/);
  });
  it('vec4: false reads scalars; unsupported block shapes are rejected', () => {
    const s = wgslSource(spec, { aligned: [true, true, true], matmul: { ...DEFAULT_MATMUL, vec4: false } });
    expect(s.code).not.toMatch(/array<vec4<f32>>/);
    expect(() => wgslSource(spec, { matmul: { ...DEFAULT_MATMUL, bn: 3 } })).toThrow(/unsupported matmul variant/);
  });
  it('variants that do not fit the limits are filtered out', () => {
    const lim = { maxStorageBuffersPerShaderStage: 8, maxComputeInvocationsPerWorkgroup: 128, maxComputeWorkgroupStorageSize: 4096, maxComputeWorkgroupsPerDimension: 65535, subgroupMinSize: 0 };
    expect(matmulVariantFits({ bm: 4, bn: 4, wg: [16, 16], vec4: true, tiled: false }, lim)).toBe(false);
    expect(matmulVariantFits({ bm: 8, bn: 8, wg: [8, 8], vec4: true, tiled: true }, lim)).toBe(false);
    expect(matmulVariantFits(DEFAULT_MATMUL, lim)).toBe(true);
  });
  it('tuning keys and thresholds', () => {
    expect(worthTuning(spec)).toBe(true); // 64^3 = 2^18
    const small = lowerPrimitive('matmul', {}, [{ view: contiguousView([8, 8]), dtype: 'float32' }, { view: contiguousView([8, 8]), dtype: 'float32' }], { shape: [8, 8], dtype: 'float32' })[0];
    expect(worthTuning(small)).toBe(false);
    const nt = lowerPrimitive('matmul', {}, [{ view: contiguousView([64, 64]), dtype: 'float32' }, { view: T(64, 64), dtype: 'float32' }], { shape: [64, 64], dtype: 'float32' })[0];
    expect(shapeKey(spec, [true, true, true])).not.toBe(shapeKey(nt, [true, true, true]));
    expect(shapeKey(spec, [true, true, true])).not.toBe(shapeKey(spec, [false, true, true]));
    expect(applicableVariants(spec, {}, false)[0]).toBe(DEFAULT_MATMUL);
    // software adapters: 4x4 blocks in one row of 8 invocations for products worth tuning, the default below
    expect(applicableVariants(spec, {}, true)[0]).toEqual({ bm: 4, bn: 4, wg: [8, 1], vec4: true, tiled: false });
    expect(matmulCandidates(true).filter((v) => !v.lanes)[0]).toEqual(SOFTWARE_MATMUL);
    // with subgroups of 8 lanes or more: 8x4 blocks whose subgroup loads a's values together, first
    expect(applicableVariants(spec, { limits: { subgroupMinSize: 8 } }, true)[0]).toEqual(SOFTWARE_LANES_MATMUL);
    expect(matmulCandidates(true)[0]).toEqual(SOFTWARE_LANES_MATMUL);
    // SwiftShader's subgroups hold 4 lanes
    expect(applicableVariants(spec, { limits: { subgroupMinSize: 4 } }, true)[0]).toEqual(SOFTWARE_LANES4_MATMUL);
    expect(applicableVariants(spec, { limits: { subgroupMinSize: 4 } }, true).some((v) => (v.lanes ?? 0) > 4)).toBe(false);
    expect(defaultMatmul(true, 1000)).toBe(DEFAULT_MATMUL);
    expect(defaultMatmul(true, 1000, 8)).toBe(DEFAULT_MATMUL);
    // adapters as Dawn/lavapipe and Chromium/SwiftShader describe themselves
    expect(isSoftwareAdapter({ vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15', description: 'llvmpipe', subgroupMinSize: 8 })).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'google', architecture: 'swiftshader', device: '', description: '', subgroupMinSize: 4 })).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H200', subgroupMinSize: 32 })).toBe(false);
    expect(defaultMatmul(false, 2 ** 30)).toBe(DEFAULT_MATMUL);
  });

  it('a tune step waits for a quiet queue, and for at most its cap when the program keeps submitting', async () => {
    // a queue whose work finishes at once: quiet
    let drains = 0;
    const idle = { onSubmittedWorkDone: async () => { drains++; } };
    expect(await quietQueue(idle, 1000)).toBe(true);
    expect(drains).toBe(1);
    // the program submits again whenever its work has finished (a busy loop): not quiet, so the wait
    // retries until its cap and then lets the step run
    drains = 0;
    const busy = { onSubmittedWorkDone: async () => { drains++; noteUserSubmit(); } };
    const t0 = performance.now();
    expect(await quietQueue(busy, 120)).toBe(false);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(120);
    expect(drains).toBeGreaterThan(1);
  });
});

describe('buffer pool (unit)', () => {
  const fakeDevice = () => {
    let made = 0;
    const dev = {
      createBuffer: ({ size }: { size: number }) => ({ size, id: made++, destroyed: false, destroy() { this.destroyed = true; } }),
    };
    return dev as unknown as GPUDevice;
  };
  it('size classes leave at most 25% slack', () => {
    for (const b of [1, 17, 4096, 4097, 5000, 1 << 20, (1 << 20) + 1, 3_000_000]) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c).toBeLessThanOrEqual(Math.max(16, b * 1.25 + 16));
    }
  });
  it('a returned buffer is reused only after its submission completed, and buffers past the cap are destroyed', () => {
    const pool = new BufferPool(fakeDevice(), 10_000, 0);
    const id = (b: Block): number => (b.buffer as unknown as { id: number }).id;
    const a = pool.acquire(4000, Infinity);
    pool.release(a, 1); // used by submission 1 (e.g. the pending encoder)
    const b = pool.acquire(4000, Infinity);
    expect(id(b)).not.toBe(id(a)); // submission 1 has not completed
    pool.completedUpTo(1);
    const c = pool.acquire(4000, Infinity);
    expect(id(c)).toBe(id(a));
    expect(pool.stats.reused).toBe(1);
    // cap: 10 000 bytes of free buffers
    const bufs = [0, 1, 2].map(() => pool.acquire(4000, Infinity));
    for (const x of bufs) pool.release(x, 0);
    expect(pool.stats.destroyed).toBe(1);
    expect(pool.stats.freeBytes).toBe(8000);
  });
});

describe.runIf(hasWebGPU)('matmul variants on webgpu vs cpu', () => {
  afterAll(() => setMatmulVariant(null));
  // Shader compilation is slow on software adapters (a large unrolled kernel takes a good fraction of a
  // second on lavapipe), so the default variant gets every case, the variants this adapter's tuner may
  // pick get one case per load mode, and the rest (the GPU list, tiled ones included) get two or three.
  const lim = () => {
    const l = limits();
    return { maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage, maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize, maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension, subgroupMinSize: subgroupMinSize() };
  };
  const all = cases();
  const pick = (...labels: string[]) => all.filter((c) => labels.some((l) => c.label.startsWith(l)));
  const check = async (variants: MatmulVariant[], cs: Case[]) => {
    const wl = lim();
    for (const v of variants) {
      if (!matmulVariantFits(v, wl)) continue;
      setMatmulVariant(v);
      for (const c of cs) expectMatch(`${matmulVariantKey(v)}: ${c.label}`, await runCase(c), c.exact ?? false);
    }
  };
  it('the defaults (4x4 @ 8x8; for software adapters 4x8 @ 8x1, and 8x4 @ 8x1 with subgroup loads where the device has them; and a scalar-load twin) on every layout, batch, odd size, offset, int32 and an epilogue', async () => {
    await check([DEFAULT_MATMUL, defaultMatmul(true, 2 ** 30), defaultMatmul(true, 2 ** 30, subgroupMinSize()), { ...DEFAULT_MATMUL, vec4: false }], all);
  }, 300_000);
  it('the software candidates on every load mode (a along k / m / scalar x b along n / k / scalar)', async () => {
    await check(matmulCandidates(true), pick('NN 33x20x20', 'NT 33x20x18', 'TN 24x9x20', 'TN 21x13x11', 'NN 13x16x12', 'batched'));
  }, 300_000);
  it('the GPU candidates (tiled and register-blocked) on odd, transposed, batched and int32 products', async () => {
    const gpu = matmulCandidates(false);
    expect(gpu.some((v) => v.tiled)).toBe(true);
    await check(gpu.filter((v) => !v.tiled), pick('TN 21x13x11', 'batched'));
    await check(gpu.filter((v) => v.tiled), pick('TT 33x20x17', 'batched', 'int32'));
  }, 300_000);
});

describe.runIf(hasWebGPU)('autotune', () => {
  const file = path.join(os.tmpdir(), `kiln-autotune-test-${process.pid}.json`);
  const saved = { cache: process.env.KILN_AUTOTUNE_CACHE, on: process.env.KILN_AUTOTUNE };
  beforeAll(() => {
    process.env.KILN_AUTOTUNE_CACHE = file;
    delete process.env.KILN_AUTOTUNE;
    clearAutotuneCache();
  });
  afterAll(() => {
    if (saved.cache === undefined) delete process.env.KILN_AUTOTUNE_CACHE; else process.env.KILN_AUTOTUNE_CACHE = saved.cache;
    if (saved.on === undefined) delete process.env.KILN_AUTOTUNE; else process.env.KILN_AUTOTUNE = saved.on;
    clearAutotuneCache();
    try { fs.unlinkSync(file); } catch { /* not written */ }
  });

  it('tunes a shape once per adapter, caches it in memory and in the JSON file, and a fresh cache reads it back', async () => {
    const spec = lowerPrimitive('matmul', {}, [{ view: contiguousView([64, 96]), dtype: 'float32' }, { view: T(96, 72), dtype: 'float32' }], { shape: [64, 72], dtype: 'float32' })[0];
    const aligned = [true, true, true];
    const adapter = adapterKey(adapterInfo());
    const shape = shapeKey(spec, aligned)!;
    expect(cachedVariant(adapter, shape)).toBeUndefined();
    const lim = limits();
    const variants = [DEFAULT_MATMUL, { bm: 8, bn: 4, wg: [16, 1] as [number, number], vec4: true, tiled: false }];
    const before = tuneReports().length;
    const v = await requestTune({ device: getDeviceSync(), adapter, spec, aligned, opts: { limits: { maxComputeInvocationsPerWorkgroup: lim.maxComputeInvocationsPerWorkgroup } }, software: true, variants, budgetMs: 60_000 });
    expect(variants.map(matmulVariantKey)).toContain(matmulVariantKey(v));
    const report = tuneReports()[before];
    expect(report.complete).toBe(true);
    expect(report.timings.length).toBe(2);
    expect(cachedVariant(adapter, shape)).toEqual(v);
    // a second request is answered from the cache (no new tune)
    await requestTune({ device: getDeviceSync(), adapter, spec, aligned, opts: {}, software: true });
    expect(tuneReports().length).toBe(before + 1);
    // the file, as a second process would read it
    const data = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, Record<string, { variant: MatmulVariant; tried?: string[] }>>;
    expect(data[adapter][shape]).toEqual({ variant: v });
    clearAutotuneCache();
    expect(cachedVariant(adapter, shape)).toEqual(v);
    expect(cachedVariant('another/adapter', shape)).toBeUndefined();
  }, 120_000);

  it('eager matmuls start a tune in the background and keep giving the right answer before and after it', async () => {
    clearAutotuneCache();
    const before = tuneReports().length;
    const a = kiln.randn([72, 80], { device: 'webgpu' }), b = kiln.randn([80, 68], { device: 'webgpu' });
    const ca = kiln.tensor(await a.data(), { shape: [72, 80] }), cb = kiln.tensor(await b.data(), { shape: [80, 68] });
    const want = await ca.matmul(cb).data();
    const check = async () => {
      const got = await a.matmul(b).data();
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(1e-5 + 1e-5 * Math.abs(want[i]));
    };
    await check();
    await tunesSettled();
    expect(tuneReports().length).toBe(before + 1);
    await check();
  }, 120_000);

  it('KILN_AUTOTUNE=0 turns tuning off', async () => {
    process.env.KILN_AUTOTUNE = '0';
    try {
      clearAutotuneCache();
      const before = tuneReports().length;
      const a = kiln.randn([68, 84], { device: 'webgpu' }), b = kiln.randn([84, 76], { device: 'webgpu' });
      await a.matmul(b).data();
      await tunesSettled();
      expect(tuneReports().length).toBe(before);
    } finally {
      delete process.env.KILN_AUTOTUNE;
    }
  });

  it('KILN_AUTOTUNE=0 launches the adapter\'s deterministic default: on software adapters 8x4 @ 8x1 with subgroup loads, else 4x4 @ 8x1 (4x8 @ 8x1 for large products)', () => {
    process.env.KILN_AUTOTUNE = '0';
    try {
      const info = adapterInfo();
      const spec = lowerPrimitive('matmul', {}, [{ view: contiguousView([256, 256]), dtype: 'float32' }, { view: contiguousView([256, 256]), dtype: 'float32' }], { shape: [256, 256], dtype: 'float32' })[0];
      const target = webgpuBackend.target as Extract<typeof webgpuBackend.target, { language: 'wgsl' }>;
      const v = chooseMatmul({ device: getDeviceSync(), adapter: adapterKey(info), software: isSoftwareAdapter(info), target, spec, aligned: [true, true, true], mayTune: true });
      expect(v).toEqual(!isSoftwareAdapter(info) ? DEFAULT_MATMUL : subgroupMinSize() >= 8 ? SOFTWARE_LANES_MATMUL : subgroupMinSize() >= 4 ? SOFTWARE_LANES4_MATMUL : SOFTWARE_MATMUL);
      const llvmpipe = { vendor: 'mesa', architecture: 'software', device: 'llvmpipe', description: '', subgroupMinSize: 8 };
      expect(untunedMatmul(adapterPolicy(llvmpipe, 8).matmul, 256 ** 3)).toEqual(SOFTWARE_LANES_MATMUL);
      expect(untunedMatmul(adapterPolicy(llvmpipe, 8).matmul, 1024 ** 3)).toEqual(SOFTWARE_LANES_MATMUL);
      const swiftshader = { vendor: 'google', architecture: 'swiftshader', device: '', description: '', subgroupMinSize: 4 };
      expect(untunedMatmul(adapterPolicy(swiftshader, 4).matmul, 256 ** 3)).toEqual(SOFTWARE_LANES4_MATMUL);
      // convolutions in subgroup rounds too, on software adapters only
      expect([adapterPolicy(llvmpipe, 8), adapterPolicy(swiftshader, 4), adapterPolicy(llvmpipe)].map((p) => p.options.convLanes)).toEqual([8, 4, 0]);
      expect(adapterPolicy({ vendor: 'nvidia', architecture: 'hopper', device: '', description: '', subgroupMinSize: 32 }, 32).options.convLanes).toBe(0);
      // a device without the subgroups feature
      const lavapipe = adapterPolicy(llvmpipe).matmul;
      expect(untunedMatmul(lavapipe, 256 ** 3)).toEqual(SOFTWARE_MATMUL);
      // large products (1024^3): 4x8 blocks in one row of 8 invocations
      expect(untunedMatmul(lavapipe, 1024 ** 3)).toEqual(SOFTWARE_LARGE_MATMUL);
      expect(defaultMatmul(true, 1024 ** 3)).toEqual(SOFTWARE_LARGE_MATMUL);
    } finally {
      delete process.env.KILN_AUTOTUNE;
    }
  });

  it('a tune its budget cut short is persisted with what it timed, and the next process resumes it and keeps the winner', async () => {
    try { fs.unlinkSync(file); } catch { /* none */ }
    clearAutotuneCache();
    const spec = lowerPrimitive('matmul', {}, [{ view: contiguousView([64, 80]), dtype: 'float32' }, { view: contiguousView([80, 96]), dtype: 'float32' }], { shape: [64, 96], dtype: 'float32' })[0];
    const aligned = [true, true, true];
    const adapter = adapterKey(adapterInfo()), software = isSoftwareAdapter(adapterInfo());
    const shape = shapeKey(spec, aligned)!;
    const opts = { limits: { maxComputeInvocationsPerWorkgroup: limits().maxComputeInvocationsPerWorkgroup } };
    const all = applicableVariants(spec, opts, software);
    expect(all.length).toBeGreaterThan(1);
    // budget 0: the first variant is timed, then the tune stops
    const first = await requestTune({ device: getDeviceSync(), adapter, spec, aligned, opts, software, budgetMs: 0 });
    expect(first).toEqual(all[0]);
    expect(cachedEntry(adapter, shape)).toEqual({ variant: all[0], tried: [matmulVariantKey(all[0])] });
    const onDisk = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
    expect(onDisk[adapter][shape]).toEqual({ variant: all[0], tried: [matmulVariantKey(all[0])] });
    // a fresh process (memory forgotten, file re-read) resumes: the choice so far first, then the rest
    clearAutotuneCache();
    const before = tuneReports().length;
    const v = await requestTune({ device: getDeviceSync(), adapter, spec, aligned, opts, software, budgetMs: 120_000 });
    const report = tuneReports()[before];
    expect(report.tried).toEqual(all.map(matmulVariantKey));
    expect(report.timings.map((t) => t.variant)).toEqual(all.map(matmulVariantKey));
    expect(cachedEntry(adapter, shape)).toEqual({ variant: v });
    clearAutotuneCache();
    expect(cachedEntry(adapter, shape)).toEqual({ variant: v });
    // and a complete entry is reused as is: no new tune
    const target = webgpuBackend.target as Extract<typeof webgpuBackend.target, { language: 'wgsl' }>;
    expect(chooseMatmul({ device: getDeviceSync(), adapter, software, target, spec, aligned, mayTune: true })).toEqual(v);
    await tunesSettled();
    expect(tuneReports().length).toBe(before + 1);
  }, 300_000);

  it('a corrupt or malformed cache file is ignored with a note, never a crash, and the next tune replaces it', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const adapter = adapterKey(adapterInfo());
      const spec = lowerPrimitive('matmul', {}, [{ view: contiguousView([64, 64]), dtype: 'float32' }, { view: contiguousView([64, 64]), dtype: 'float32' }], { shape: [64, 64], dtype: 'float32' })[0];
      const shape = shapeKey(spec, [true, true, true])!;
      fs.writeFileSync(file, '{"truncated": {"x": {"variant": {"bm": 4');
      clearAutotuneCache();
      expect(cachedVariant(adapter, shape)).toBeUndefined();
      expect(cachedVariant(adapter, shape)).toBeUndefined();
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][0])).toMatch(/ignoring the matmul autotune cache .*not valid JSON/);
      // well-formed JSON with bad entries: the good one is kept, the rest noted
      fs.writeFileSync(file, JSON.stringify({ [adapter]: { [shape]: { variant: { ...DEFAULT_MATMUL, wg: [8, 8] } }, bad: { variant: { bm: 3, bn: 4, wg: [1, 1], vec4: true, tiled: false } }, worse: "x" }, [adapter + "2"]: 5, "v1:old": { x: 1 } }));
      clearAutotuneCache();
      expect(cachedVariant(adapter, shape)).toEqual(DEFAULT_MATMUL);
      expect(cachedVariant(adapter, 'bad')).toBeUndefined();
      expect(String(warn.mock.calls.at(-1)![0])).toMatch(/ignoring 3 malformed entries/);
      // a lanes variant is read back with its lanes; one with a lane count kiln never writes is malformed
      fs.writeFileSync(file, JSON.stringify({ [adapter]: { [shape]: { variant: SOFTWARE_LANES_MATMUL }, odd: { variant: { ...SOFTWARE_LANES_MATMUL, lanes: 3 } } } }));
      clearAutotuneCache();
      expect(cachedVariant(adapter, shape)).toEqual(SOFTWARE_LANES_MATMUL);
      expect(cachedVariant(adapter, 'odd')).toBeUndefined();
      fs.writeFileSync(file, '[1, 2]');
      clearAutotuneCache();
      expect(cachedVariant(adapter, shape)).toBeUndefined();
      expect(String(warn.mock.calls.at(-1)![0])).toMatch(/not a JSON object/);
      // the next tune writes a valid file in place of the corrupt one
      fs.writeFileSync(file, 'garbage');
      clearAutotuneCache();
      const v = await requestTune({ device: getDeviceSync(), adapter, spec, aligned: [true, true, true], opts: {}, software: true, variants: [DEFAULT_MATMUL], budgetMs: 60_000 });
      const data = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
      expect(data[adapter][shape]).toEqual({ variant: v });
    } finally {
      warn.mockRestore();
    }
  }, 120_000);
});

describe.runIf(hasWebGPU)('buffer pool (webgpu)', () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const collect = async () => {
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 0)); // finalizers run in a later task
    }
  };

  it('buffers of collected tensors are reused, and chains whose intermediates die while queued stay right', async () => {
    await sync();
    const x = kiln.zeros([1024, 1024], { device: 'webgpu' });
    let t = x;
    for (let i = 0; i < 40; i++) {
      t = t.add(1); // the previous t becomes garbage while its launch is still pending
      if (i % 5 === 0) await collect();
    }
    const v = await t.data();
    expect(v[0]).toBe(40);
    expect(v[v.length - 1]).toBe(40);
    await sync();
    await collect();
    await sync();
    const r0 = poolStats()!.reused;
    for (let i = 0; i < 20; i++) {
      const y = x.add(i);
      if (i % 4 === 0) { await sync(); await collect(); }
      void y;
    }
    const s = poolStats()!;
    expect(s.reused).toBeGreaterThan(r0);
    expect((await x.add(2).data())[7]).toBe(2);
  }, 60_000);
});
