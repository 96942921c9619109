// The backend interface (runtime/device.ts) on every device: prepare, prepareProgram and write are
// there and work alike, and what the compiler knows of a device is a plain description
// (compiler/target.ts) from which binding limits and kernel sources are answered. On WebGPU, a
// replaced device gets a fresh backend instance, and launchers prepared before keep working.

import { describe, expect, it } from 'vitest';
import { describeEachDevice, testDevices } from './devices.ts';
import { contiguousView, type View } from '../ir/view.ts';
import { lowerPrimitive } from '../compiler/lower.ts';
import { kernelSource, maxKernelArgs } from '../compiler/target.ts';
import { backendFor, type Storage } from '../runtime/device.ts';
import { destroy, limits } from '../runtime/webgpu/device.ts';
import { poolStats } from '../runtime/webgpu/backend.ts';
import * as kiln from '../index.ts';

const vec = (n: number): View => contiguousView([n]);
const f32 = 'float32' as const;
// s (one element) broadcast over 4
const scalarView: View = { shape: [4], strides: [0], offset: 0 };
const mulSpec = lowerPrimitive('mul', {}, [{ view: vec(4), dtype: f32 }, { view: scalarView, dtype: f32 }], { shape: [4], dtype: f32 });
const addSpec = lowerPrimitive('add', {}, [{ view: vec(4), dtype: f32 }, { view: vec(4), dtype: f32 }], { shape: [4], dtype: f32 });

describeEachDevice('backend interface', (device) => {
  it('prepareProgram binds kernels from a storage table; write updates a storage between runs', async () => {
    const b = backendFor(device);
    // table: 0 x, 1 s, 2 y = x * s, 3 z = y + x
    const table: Storage[] = [b.upload(new Float32Array([1, 2, 3, 4])), b.alloc(f32, 1), b.alloc(f32, 4), b.alloc(f32, 4)];
    const program = b.prepareProgram([...mulSpec, ...addSpec], [[0, 1, 2], [2, 0, 3]]);
    b.write(table[1], new Float32Array([10]));
    program(table);
    expect(Array.from(await b.read(table[3], 0, 4))).toEqual([11, 22, 33, 44]);
    b.write(table[1], new Float32Array([-1]));
    program(table);
    expect(Array.from(await b.read(table[3], 0, 4))).toEqual([0, 0, 0, 0]);
  });

  it('prepare gives a launcher that binds arguments at their offsets on every call', async () => {
    const b = backendFor(device);
    const [spec] = addSpec;
    const launch = b.prepare(spec);
    const x = b.upload(new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]));
    const out = b.alloc(f32, 4);
    launch([{ storage: x, offset: 0 }, { storage: x, offset: 4 }, { storage: out, offset: 0 }]);
    expect(Array.from(await b.read(out, 0, 4))).toEqual([4, 6, 8, 10]);
    launch([{ storage: x, offset: 4 }, { storage: x, offset: 4 }, { storage: out, offset: 0 }]);
    expect(Array.from(await b.read(out, 0, 4))).toEqual([8, 10, 12, 14]);
  });

  it('the compiler gets a plain description: binding limit and kernel source come from it', async () => {
    const t = backendFor(device).target;
    expect(JSON.parse(JSON.stringify(t))).toEqual(t); // data only: no functions, no device objects
    expect(maxKernelArgs(t)).toBe(device === 'cpu' ? Infinity : limits().maxStorageBuffersPerShaderStage);
    const src = kernelSource(addSpec[0], t);
    expect(src.language).toBe(device === 'cpu' ? 'js' : 'wgsl');
    // a compiled step lists each kernel as codegen makes it from the same description
    const step = kiln.compile((a: kiln.Tensor, c: kiln.Tensor) => a.add(c).exp());
    const a = kiln.tensor([1, 2], { device }), c = kiln.tensor([3, 4], { device });
    const l = await step.lower(a, c);
    expect(l.kernels).toHaveLength(1);
    expect(l.kernels[0].language).toBe(src.language);
    expect(l.kernels[0].source).toContain(device === 'cpu' ? 'Math.exp' : 'exp(');
  });
});

// (registered only where WebGPU runs, as describeEachDevice does)
if ((await testDevices()).includes('webgpu')) describe('webgpu: a replaced device', () => {
  it('gets a fresh backend instance (its own pool); launchers prepared before prepare again on it', async () => {
    const x = kiln.tensor([1, 2, 3], { device: 'webgpu' }), y = kiln.tensor([10, 20, 30], { device: 'webgpu' });
    expect(Array.from(await x.add(y).data())).toEqual([11, 22, 33]); // caches an eager launcher for add
    const launch = backendFor('webgpu').prepare(addSpec[0]);
    expect(poolStats()!.created).toBeGreaterThan(0);
    destroy();
    await kiln.webgpu.init();
    expect(poolStats()!.created).toBe(0); // a new pool: nothing of the old device's instance is used
    const b = backendFor('webgpu');
    const p = b.upload(new Float32Array([1, 2, 3, 4])), q = b.upload(new Float32Array([5, 6, 7, 8])), out = b.alloc(f32, 4);
    expect(poolStats()!.created).toBe(3);
    launch([{ storage: p, offset: 0 }, { storage: q, offset: 0 }, { storage: out, offset: 0 }]);
    expect(Array.from(await b.read(out, 0, 4))).toEqual([6, 8, 10, 12]);
    // the cached eager launcher too
    const u = kiln.tensor([1, 2, 3], { device: 'webgpu' }), v = kiln.tensor([4, 5, 6], { device: 'webgpu' });
    expect(Array.from(await u.add(v).data())).toEqual([5, 7, 9]);
  });

  it("a number operand's cached constant from the old device is not used on the new one", async () => {
    const x = kiln.tensor([1, 2, 3], { device: 'webgpu' });
    expect(Array.from(await x.mul(2).data())).toEqual([2, 4, 6]); // caches the constant 2 on this device
    destroy();
    await kiln.webgpu.init();
    const y = kiln.tensor([1, 2, 3], { device: 'webgpu' });
    expect(Array.from(await y.mul(2).data())).toEqual([2, 4, 6]);
  });
});
