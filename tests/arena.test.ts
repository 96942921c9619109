// The thread pool's memory as an arena (runtime/arena.ts, runtime/pool.ts): compiled programs' arrays
// live in it, the gemm reads them there without copying them in, and its scratch moves, keeping what a
// region holds, when it must grow past them.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { Arena } from '../runtime/arena.ts';
import { gemm } from '../runtime/gemm-wasm.ts';
import { pool } from '../runtime/pool.ts';
import type { CpuStorage } from '../runtime/cpu.ts';
import { convCpu } from '../runtime/conv-cpu.ts';
import type { ConvAttrs } from '../ir/conv.ts';

const PAGE = 65536;

describe('Arena', () => {
  it('hands out aligned, disjoint blocks, merges given-back neighbours and reuses them', () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 8 });
    const arena = new Arena(memory, 1024, 8);
    const a = arena.take(100)!, b = arena.take(1000)!, c = arena.take(64)!;
    expect([a, b, c]).toEqual([1024, 1024 + 128, 1024 + 128 + 1024]);
    expect(arena.takenBytes).toBe(128 + 1024 + 64);
    arena.give(a);
    arena.give(b); // merges with a's range
    expect(arena.take(1100)).toBe(1024); // first fit: the merged range
    arena.give(c);
    expect(() => arena.give(c)).toThrow('arena: no block at');
  });

  it('grows the memory at its end for a block that fits nowhere, and says null past its maximum', () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 4 });
    const arena = new Arena(memory, 0, 4);
    expect(arena.take(PAGE)).toBe(0);
    expect(arena.take(2 * PAGE + 10)).toBe(PAGE); // grows by 3 pages (the block spills into a third)
    expect(memory.buffer.byteLength).toBe(4 * PAGE);
    expect(arena.take(PAGE)).toBeNull();
    expect(memory.buffer.byteLength).toBe(4 * PAGE);
  });
});

describe("the pool's memory", () => {
  const p = pool();
  it.runIf(p !== null)('holds zeroed arrays that the gemm reads in place, with the same result as private copies', () => {
    const m = 37, n = 45, k = 300;
    const a = p!.array(Float32Array, m * k) as Float32Array, b = p!.array(Float32Array, k * n) as Float32Array;
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(a.every((v) => v === 0) && b.every((v) => v === 0)).toBe(true);
    a.forEach((_, i) => (a[i] = Math.sin(i * 1.3)));
    b.forEach((_, i) => (b[i] = Math.cos(i * 0.7)));
    expect(p!.owns(a) && p!.owns(b.subarray(5))).toBe(true);
    expect(p!.owns(Float32Array.from(a))).toBe(false);
    const inPlace = gemm!(a, 0, k, 1, b, 0, 1, k, m, n, k); // b read transposed
    const result = inPlace.c.slice(), ldc = inPlace.ldc;
    expect(p!.owns(inPlace.c), "the product's result lies in the scratch, not an array's block").toBe(false);
    const copied = gemm!(Float32Array.from(a), 0, k, 1, Float32Array.from(b), 0, 1, k, m, n, k);
    expect(copied.ldc).toBe(ldc);
    expect(Array.from(copied.c.subarray(0, m * ldc))).toEqual(Array.from(result));
  });

  it.runIf(p !== null)("gives arrays at most three quarters of its gigabyte (the rest stays for the gemm's scratch): past that, null", () => {
    expect(p!.array(Float32Array, (3 * 2 ** 30) / 16 + 1)).toBeNull();
  });

  it.runIf(p !== null)('moves the scratch past arrays when a product outgrows it, keeping what a region holds', () => {
    const region = gemm!.region(1000);
    region.forEach((_, i) => (region[i] = i));
    const blocker = p!.array(Float32Array, 1 << 16) as Float32Array; // likely right after the scratch
    blocker.fill(7);
    // a product whose packed operands need more scratch than there is
    const m = 64, n = 512, k = 4096;
    const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i)), b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i));
    gemm!(a, 0, k, 1, b, 0, n, 1, m, n, k);
    const after = gemm!.region(1000);
    expect(Array.from(after.subarray(0, 5))).toEqual([0, 1, 2, 3, 4]);
    expect(after[999]).toBe(999);
    expect(blocker.every((v) => v === 7), 'an array next to the scratch is never written by a product').toBe(true);
    gemm!.region(0);
  });

  // window rows of 12 floats: the dot kernel; of 13: a product split along k, its weight read in runs
  it.runIf(p !== null).each([12, 13])("a weight gradient (window rows of %i) reads its operands in place, with the same bits as from copies", (kw) => {
    // input [N, 1, Cg, 14, W]; "weight" [1, Og, Cg, 9, kw] stored as [Cg, Og, 9, kw] (an output gradient
    // permuted): runs of 9 * kw floats, Og runs apart, crossing the gemm's blocks of 256 k-steps
    const N = 2, Cg = 20, Og = 8, kh = 9, H = 14, W = kw + 8, KP = kh * kw;
    const a: ConvAttrs = { stride: [1, 1], lhsDilation: [1, 1], dilation: [1, 1], padLo: [0, 0], padHi: [0, 0], flip: false, outPerm: [0, 1, 2, 3, 4] };
    const x = p!.array(Float32Array, N * Cg * H * W) as Float32Array, w = p!.array(Float32Array, Cg * Og * KP) as Float32Array;
    x.forEach((_, i) => (x[i] = Math.sin(i * 0.7)));
    w.forEach((_, i) => (w[i] = Math.cos(i * 0.3)));
    const xv = { shape: [N, 1, Cg, H, W], strides: [Cg * H * W, Cg * H * W, H * W, W, 1], offset: 0 };
    const wv = { shape: [1, Og, Cg, kh, kw], strides: [Og * Cg * KP, KP, Og * KP, kw, 1], offset: 0 };
    const size = N * Og * (H - kh + 1) * (W - kw + 1);
    const inPlace = convCpu(a, x, xv, w, wv, gemm).slice(0, size);
    const packed = convCpu(a, x, xv, Float32Array.from(w), wv, gemm).slice(0, size);
    expect(Array.from(inPlace)).toEqual(Array.from(packed));
    const reference = convCpu(a, x, xv, w, wv, null);
    expect(Math.max(...Array.from(inPlace, (v, i) => Math.abs(v - reference[i])))).toBeLessThan(1e-4);
  });

  it.runIf(p !== null && p.splitsKernels)("a compiled program's parameters move into it; its arguments, bound for one call, into shared memory of their own", async () => {
    const lin = new kiln.nn.Linear(32, 16);
    const opt = new kiln.optim.SGD(lin.parameters(), { lr: 0.1 });
    const step = kiln.compile((x: kiln.Tensor) => { opt.zeroGrad(); const loss = lin.forward(x).square().mean(); loss.backward(); opt.step(); return loss; });
    const x = kiln.randn([8, 32]);
    await step(x);
    for (const [name, t] of [['weight', lin.weight], ['bias', lin.bias!]] as const) expect(p!.owns((t._storage as CpuStorage).data), name).toBe(true);
    const xs = (x._storage as CpuStorage).data;
    expect(xs.buffer).toBeInstanceOf(SharedArrayBuffer);
    // a pool block comes back only when a FinalizationRegistry callback runs, which a training loop's
    // awaits postpone: arguments, new each step, must not pile up there
    expect(p!.owns(xs)).toBe(false);
  });
});
