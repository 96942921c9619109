// Convolution on the CPU: im2col in blocks through the WebAssembly SIMD gemm (runtime/gemm-wasm.ts).
// Per group, the weight is packed once as a [Og, Cg * K] matrix; then blocks of columns (whole images'
// output positions) and rows (input channels x window) of the unfolded input are built in a reusable
// scratch and multiplied by it, accumulating over row blocks. No unfold of the whole input is ever
// materialised: a block is about BLOCK floats. The result is the natural layout [N, G, Og, ...O];
// generated kernels (compiler/codegen/js.ts) apply the fused epilogue (bias, activation, an optimizer
// update) while copying it out. The gradients are convolutions too (runtime/conv-vjp.ts), so they take
// the same path.

import { convGeometry, type ConvAttrs } from '../ir/conv.ts';
import { contiguousStrides, numel } from '../ir/shape.ts';
import type { View } from '../ir/view.ts';
import type { Gemm, Unfolding } from './gemm-wasm.ts';
import type { Pool } from './pool.ts';

/** Floats in one block of the unfolded input (4 MiB: big enough to amortise packing the weight block). */
const BLOCK = 1 << 20;
/** Floats of packed B (the unfolded input) one gemm may take when its packer unfolds the input (32 MiB). */
const UNFOLDED = 1 << 23;

export type F32 = Float32Array<ArrayBuffer>;
let colScratch: F32 = new Float32Array(0), wScratch: F32 = new Float32Array(0), outScratch: F32 = new Float32Array(0);
/**
 * `a` when it holds n floats (and is in the pool's memory, given one), else a new array of at least n:
 * in the pool's memory where there is one (its gemm reads operands there in place, and split epilogues
 * read them from every thread), else private.
 */
export const grow = (a: F32, n: number, pool: Pool | null = null): F32 => {
  if (a.length >= n && (!pool || pool.owns(a))) return a;
  const length = Math.max(n, a.length * 2);
  return (pool?.array(Float32Array, length) ?? new Float32Array(length)) as F32;
};

/**
 * For each spatial dim, the input index that output position o and window position k read
 * (table[k * O + o]), or -1 where that is padding or a zero between dilated input elements.
 */
function positionTables(a: ConvAttrs, inSize: number[], kernel: number[], outSize: number[]): Int32Array[] {
  return inSize.map((S, d) => {
    const K = kernel[d], O = outSize[d], ld = a.lhsDilation[d];
    const t = new Int32Array(K * O);
    for (let k = 0; k < K; k++) {
      for (let o = 0; o < O; o++) {
        const q = o * a.stride[d] + k * a.dilation[d] - a.padLo[d];
        t[k * O + o] = q >= 0 && q % ld === 0 && q / ld < S ? q / ld : -1;
      }
    }
    return t;
  });
}

/**
 * A convolution's epilogue the gemm may apply itself (compiler/codegen/js.ts gemmEpilogue): its output
 * `out` from float `at` in the natural layout, the bias along output channels (`bias[biasAt + channel]`),
 * ReLU.
 */
export interface ConvEpilogue { out: Float32Array; at: number; bias: Float32Array | null; biasAt: number; relu: boolean }

/**
 * The convolution of `x` (read through view `xv`, shape [N, G, Cg, ...S]) with `w` (view `wv`,
 * [G, Og, Cg, ...K]) as a contiguous [N, G, Og, ...O] array. The array is a scratch reused by the next
 * call: copy it out before convolving again. Given `epi`, null when the gemm wrote the output with its
 * epilogue itself (Gemm.placed), else the array for the caller to apply it while copying.
 */
export function convCpu(a: ConvAttrs, x: Float32Array, xv: View, w: Float32Array, wv: View, gemm: Gemm | null): Float32Array;
export function convCpu(a: ConvAttrs, x: Float32Array, xv: View, w: Float32Array, wv: View, gemm: Gemm | null, epi: ConvEpilogue | undefined): Float32Array | null;
export function convCpu(a: ConvAttrs, x: Float32Array, xv: View, w: Float32Array, wv: View, gemm: Gemm | null, epi?: ConvEpilogue): Float32Array | null {
  const geo = convGeometry(xv.shape, wv.shape, a);
  const { n: N, groups: G, cin: Cg, cout: Og, kernel, outSize } = geo;
  const nd = kernel.length;
  const KP = numel(kernel), P = numel(outSize), Kc = Cg * KP;
  // For 1-d and 2-d inputs without zeros between their elements (lhsDilation 1), the gemm's packer
  // unfolds the input itself, each thread into its own panels: no im2col block is written here, and a
  // block is bounded only by the packed operand's size (UNFOLDED floats).
  const unfoldable = gemm !== null && nd <= 2 && a.lhsDilation.every((l) => l === 1) && xv.strides.every((st) => st >= 0);
  if (unfoldable && transposes(a, kernel)) return gemm!.transposedConv(a, x, xv, w, wv, geo);
  const pool = gemm?.threads ?? null;
  const out = (outScratch = grow(outScratch, N * G * Og * P, pool)); // split epilogues read it on every thread
  const ws = wv.strides, last = ws.length - 1;
  if (unfoldable && !a.flip && ws[last] === 1) {
    // A weight gradient's shape (unpadded window rows of whole vectors, a small C over a long k): the
    // gemm's dot kernel reads both operands where they are, with no packing
    const u0 = unfolding(a, x, xv, geo.inSize, kernel, outSize, 0, 0, 0);
    if (gemm!.dots(u0, Og, N * P, Kc)) {
      for (let g = 0; g < G; g++) {
        const aw = { a: w, off: wv.offset + g * ws[0], sRow: ws[1], sImage: ws[2], sRun: nd === 2 ? ws[3] : 0 };
        gemm!.dotted(aw, g ? unfolding(a, x, xv, geo.inSize, kernel, outSize, 0, g, 0) : u0, Og, N * P, Kc, { out, at: g * Og * P, image: G * Og * P, images: N });
      }
      return out;
    }
  }
  // the caller's output and epilogue, where the gemm can write it
  const into = epi && gemm?.readsInPlace(epi.out) ? epi : null;
  const target = into?.out ?? out;
  if (unfoldable && gemm!.placesImages(Og, P) && gemm!.readsInPlace(target)) {
    // whole row blocks and panels per image: the gemm writes each image's product straight into the
    // output's layout, one job for all images (no copy, no blocks), and applies the epilogue there
    const wp = (wScratch = grow(wScratch, Og * Kc, pool)), kIdx = new Int32Array(nd), at = into?.at ?? 0;
    for (let g = 0; g < G; g++) {
      packWeight(wp, w, wv, g, Og, Cg, kernel, a.flip, kIdx);
      const bias = into?.bias ? { b: into.bias, at: into.biasAt + g * Og } : undefined;
      gemm!.placed(wp, 0, Kc, 1, unfolding(a, x, xv, geo.inSize, kernel, outSize, 0, g, 0), Og, N * P, Kc, { out: target, at: at + g * Og * P, image: G * Og * P, images: N, bias, relu: into?.relu });
    }
    return into ? null : out;
  }
  // Blocks: enough columns to amortise packing the weight block (>= 256, >= 2 Og), then as many input
  // channels as fit the block budget, then, with every channel in, as many images as fit: each block is
  // one gemm (a job for every thread), so fewer, bigger blocks cost fewer hand-offs.
  // Where the gemm packs an unfolded input a chunk of panels at a time, each thread into a buffer of its
  // own, a product takes the whole input (one product: the weight packed once, one job).
  const whole = unfoldable && gemm!.streamsUnfolded(Og, N * P, Kc);
  const budget = whole ? Infinity : unfoldable ? UNFOLDED : BLOCK;
  // A product split along k reads the weight where it is when it can (in the pool's memory, a run of KP
  // floats per output and input channel, not flipped): no packed copy of it (a weight gradient's "weight"
  // is the output gradient).
  const direct = whole && gemm!.splitsK(Og, N * P, Kc) && !a.flip && gemm!.readsInPlace(w) && windowIsRun(wv.strides, kernel);
  const minImages = Math.min(N, Math.max(1, Math.ceil(Math.max(256, 2 * Og) / P)));
  const icb = Math.min(Cg, Math.max(1, Math.floor(budget / (KP * minImages * P))));
  const nb = icb < Cg ? minImages : Math.min(N, Math.max(minImages, Math.floor(budget / (Kc * P))));
  const wp = direct ? wScratch : (wScratch = grow(wScratch, Og * Kc, pool));
  const col = unfoldable ? colScratch : (colScratch = grow(colScratch, icb * KP * nb * P));
  const kIdx = new Int32Array(nd);
  // the im2col blocks' input positions (the unfolding packer computes its own)
  const tables = unfoldable ? [] : positionTables(a, geo.inSize, kernel, outSize);
  const rel = unfoldable ? new Int32Array(0) : leadOffsets(tables, kernel, outSize, xv.strides);
  // An im2col block is written along whichever of the window and the output is longer in the last
  // dim: a weight gradient's "window" is the whole output (24 x 24) and its output the kernel (3 x 3).
  const byWindow = kernel[nd - 1] > outSize[nd - 1];
  for (let g = 0; g < G; g++) {
    if (!direct) packWeight(wp, w, wv, g, Og, Cg, kernel, a.flip, kIdx);
    for (let b0 = 0; b0 < N; b0 += nb) {
      const nbc = Math.min(nb, N - b0), cols = nbc * P;
      for (let c0 = 0; c0 < Cg; c0 += icb) {
        const icc = Math.min(icb, Cg - c0), rows = icc * KP;
        let prod: { c: Float32Array; ldc: number };
        if (gemm && unfoldable) {
          const u = unfolding(a, x, xv, geo.inSize, kernel, outSize, b0, g, c0), ws = wv.strides;
          prod = direct ? gemm.unfolded(w, wv.offset + g * ws[0] + c0 * ws[2], ws[1], 1, u, Og, cols, rows, undefined, { length: KP, stride: ws[2] })
            : gemm.unfolded(wp, c0 * KP, Kc, 1, u, Og, cols, rows);
        } else {
          if (byWindow) im2colT(col, rows, x, xv, tables, rel, g, b0, nbc, c0, icc, kernel, outSize);
          else im2col(a, col, cols, x, xv, tables, rel, g, b0, nbc, c0, icc, kernel, outSize);
          const [sbk, sbn] = byWindow ? [1, rows] : [cols, 1];
          prod = gemm ? gemm(wp, c0 * KP, Kc, 1, col, 0, sbk, sbn, Og, cols, rows) : jsGemm(wp, c0 * KP, Kc, col, sbk, sbn, cols, Og, rows);
        }
        const c = prod.c, ldc = prod.ldc;
        for (let bi = 0; bi < nbc; bi++) {
          for (let o = 0; o < Og; o++) {
            const dst = (((b0 + bi) * G + g) * Og + o) * P, src = o * ldc + bi * P;
            if (c0 === 0) out.set(c.subarray(src, src + P), dst);
            else for (let p = 0; p < P; p++) out[dst + p] += c[src + p];
          }
        }
      }
    }
  }
  return out;
}

/**
 * Whether a convolution is the transpose of a stride-1 one -- an input gradient: stride 1, full padding
 * dilation * (k - 1) on both sides, a window of more than one element. Such a convolution reads each
 * input element with every window position: computed directly, its unfolded input is KP times the
 * input, padding included, and its product has only Og rows to amortise packing that over (an input
 * gradient's Og is the forward's input channels, often few). The gemm computes it so (conv-transposed.ts).
 */
function transposes(a: ConvAttrs, kernel: number[]): boolean {
  return kernel.some((k) => k > 1) && kernel.every((k, d) => a.stride[d] === 1 && a.padLo[d] === a.dilation[d] * (k - 1) && a.padHi[d] === a.padLo[d]);
}

/**
 * The input block of images b0.., group g, channels c0.. as the gemm's unfolding packer reads it
 * (gemm-wasm.ts Unfolding): a 1-d convolution is a 2-d one with a single row.
 */
export function unfolding(a: ConvAttrs, x: Float32Array, xv: View, inSize: number[], kernel: number[], outSize: number[], b0: number, g: number, c0: number): Unfolding {
  const s = xv.strides, two = kernel.length === 2;
  const h = (v: readonly number[], one: number) => (two ? v[0] : one), w = (v: readonly number[]) => v[kernel.length - 1];
  return {
    x, off: xv.offset + b0 * s[0] + g * s[1] + c0 * s[2], sN: s[0], sC: s[2], sH: two ? s[3] : 0, sW: w(s.slice(3)),
    kh: h(kernel, 1), kw: w(kernel), oh: h(outSize, 1), ow: w(outSize), h: h(inSize, 1), w: w(inSize),
    strideH: h(a.stride, 1), strideW: w(a.stride), dilationH: h(a.dilation, 1), dilationW: w(a.dilation), padH: h(a.padLo, 0), padW: w(a.padLo),
  };
}

/** wp[o, c * KP + k] = w[g, o, c, k] (window reversed when `flip`), read through the weight's view. */
export function packWeight(wp: Float32Array, w: Float32Array, wv: View, g: number, Og: number, Cg: number, kernel: number[], flip: boolean, kIdx: Int32Array): void {
  const nd = kernel.length, KP = numel(kernel);
  const s = wv.strides;
  // A window stored contiguously (a weight; a weight gradient's "window", the output gradient) is one
  // run of KP floats per (o, c), reversed when flipped: no per-element index arithmetic.
  const runs = windowIsRun(s, kernel);
  for (let o = 0; o < Og; o++) {
    for (let c = 0; c < Cg; c++) {
      const base = wv.offset + g * s[0] + o * s[1] + c * s[2], dst = (o * Cg + c) * KP;
      if (runs && !flip) { wp.set(w.subarray(base, base + KP), dst); continue; }
      if (runs) { for (let kf = 0; kf < KP; kf++) wp[dst + kf] = w[base + KP - 1 - kf]; continue; }
      kIdx.fill(0);
      for (let kf = 0; kf < KP; kf++) {
        let off = base;
        for (let d = 0; d < nd; d++) off += (flip ? kernel[d] - 1 - kIdx[d] : kIdx[d]) * s[3 + d];
        wp[(o * Cg + c) * KP + kf] = w[off];
        for (let d = nd - 1; d >= 0 && ++kIdx[d] === kernel[d]; d--) kIdx[d] = 0;
      }
    }
  }
}

/** Whether a weight of strides `s` ([G, Og, Cg, ...K]) stores each window as one run of KP adjacent floats. */
const windowIsRun = (s: readonly number[], kernel: number[]): boolean => contiguousStrides(kernel).every((st, d) => st === s[3 + d] || kernel[d] === 1);

/**
 * For the leading spatial dims (all but the last): the offset, within one image's channel plane, of
 * the input row that window position kl and output position ol read (rel[kl * OLead + ol], both
 * row-major over those dims), or -1 when any dim of it falls outside the input (padding). Built once
 * per call, so the unfolding loops below copy rows without index arithmetic.
 */
function leadOffsets(tables: Int32Array[], kernel: number[], outSize: number[], s: readonly number[]): Int32Array {
  const lead = kernel.length - 1;
  const KLead = numel(kernel.slice(0, lead)), OLead = numel(outSize.slice(0, lead));
  const rel = new Int32Array(KLead * OLead);
  const k = new Int32Array(lead);
  for (let kl = 0; kl < KLead; kl++) {
    const o = new Int32Array(lead);
    for (let ol = 0; ol < OLead; ol++) {
      let off = 0;
      for (let d = 0; d < lead && off >= 0; d++) {
        const i = tables[d][k[d] * outSize[d] + o[d]];
        off = i < 0 ? -1 : off + i * s[3 + d];
      }
      rel[kl * OLead + ol] = off;
      for (let d = lead - 1; d >= 0 && ++o[d] === outSize[d]; d--) o[d] = 0;
    }
    for (let d = lead - 1; d >= 0 && ++k[d] === kernel[d]; d--) k[d] = 0;
  }
  return rel;
}

/**
 * The last spatial dim's input positions as runs: for window position k, outputs [o0, o1) read
 * input q0 + o * step (in elements of that dim) and the rest are padding. Null when the input is
 * dilated (lhsDilation > 1: zeros between its elements); then the position table is read per element.
 */
function lastDimRuns(a: ConvAttrs, inSize: number, K: number, O: number, last: number): Int32Array | null {
  if (a.lhsDilation[last] !== 1) return null;
  const runs = new Int32Array(3 * K), st = a.stride[last];
  for (let k = 0; k < K; k++) {
    const q0 = k * a.dilation[last] - a.padLo[last];
    const o0 = Math.min(O, Math.max(0, Math.ceil(-q0 / st))), o1 = Math.min(O, Math.max(o0, Math.floor((inSize - 1 - q0) / st) + 1));
    runs.set([o0, o1, q0], 3 * k);
  }
  return runs;
}

/**
 * col[(c - c0) * KP + k, (b - b0) * P + p] = x[b, g, c, pos(p, k)] (0 outside the input) for the
 * channels c0.. c0 + icc and images b0 .. b0 + nbc; the last spatial dim is the inner loop.
 */
function im2col(a: ConvAttrs, col: Float32Array, cols: number, x: Float32Array, xv: View, tables: Int32Array[], rel: Int32Array, g: number, b0: number, nbc: number, c0: number, icc: number,
  kernel: number[], outSize: number[]): void {
  const nd = kernel.length, KP = numel(kernel), P = numel(outSize);
  const s = xv.strides;
  const last = nd - 1, KL = kernel[last], OL = outSize[last], sL = s[3 + last], tL = tables[last];
  const OLead = P / OL, step = a.stride[last] * sL;
  const runs = lastDimRuns(a, xv.shape[3 + last], KL, OL, last);
  for (let c = 0; c < icc; c++) {
    for (let kf = 0; kf < KP; kf++) {
      const row = (c * KP + kf) * cols, kl = Math.floor(kf / KL), kL = kf - kl * KL, tOff = kL * OL;
      const o0 = runs ? runs[3 * kL] : 0, o1 = runs ? runs[3 * kL + 1] : 0, q0 = runs ? runs[3 * kL + 2] : 0;
      for (let bi = 0; bi < nbc; bi++) {
        const base = xv.offset + (b0 + bi) * s[0] + g * s[1] + (c0 + c) * s[2];
        for (let ol = 0; ol < OLead; ol++) {
          const dst = row + bi * P + ol * OL, r = rel[kl * OLead + ol];
          if (r < 0) {
            for (let o = 0; o < OL; o++) col[dst + o] = 0;
          } else if (runs) {
            // zeros, a strided copy, zeros
            for (let o = 0; o < o0; o++) col[dst + o] = 0;
            for (let o = o0, at = base + r + (q0 + o0 * a.stride[last]) * sL; o < o1; o++, at += step) col[dst + o] = x[at];
            for (let o = o1; o < OL; o++) col[dst + o] = 0;
          } else {
            for (let o = 0; o < OL; o++) {
              const i = tL[tOff + o];
              col[dst + o] = i < 0 ? 0 : x[base + r + i * sL];
            }
          }
        }
      }
    }
  }
}

/**
 * The same block transposed: col[(b - b0) * P + p, (c - c0) * KP + k], the last window dim inner.
 */
function im2colT(col: Float32Array, rows: number, x: Float32Array, xv: View, tables: Int32Array[], rel: Int32Array, g: number, b0: number, nbc: number, c0: number, icc: number,
  kernel: number[], outSize: number[]): void {
  const nd = kernel.length, KP = numel(kernel), P = numel(outSize);
  const s = xv.strides;
  const last = nd - 1, KL = kernel[last], OL = outSize[last], sL = s[3 + last], tL = tables[last];
  const KLead = KP / KL, OLead = P / OL;
  for (let bi = 0; bi < nbc; bi++) {
    for (let p = 0; p < P; p++) {
      const rowBase = (bi * P + p) * rows, ol = Math.floor(p / OL), oL = p - ol * OL;
      for (let c = 0; c < icc; c++) {
        const base = xv.offset + (b0 + bi) * s[0] + g * s[1] + (c0 + c) * s[2];
        for (let kl = 0; kl < KLead; kl++) {
          const dst = rowBase + c * KP + kl * KL, r = rel[kl * OLead + ol];
          if (r < 0) {
            for (let k = 0; k < KL; k++) col[dst + k] = 0;
          } else {
            for (let k = 0; k < KL; k++) {
              const i = tL[k * OL + oL];
              col[dst + k] = i < 0 ? 0 : x[base + r + i * sL];
            }
          }
        }
      }
    }
  }
}

let jsScratch: F32 = new Float32Array(0);
/** C = A[:, a0 .. a0 + k] @ B (lda = Kc; B read with strides sbk, sbn) where WebAssembly SIMD is missing. */
function jsGemm(A: Float32Array, a0: number, lda: number, B: Float32Array, sbk: number, sbn: number, n: number, m: number, k: number): { c: Float32Array; ldc: number } {
  const c = (jsScratch = grow(jsScratch, m * n));
  c.fill(0, 0, m * n);
  for (let i = 0; i < m; i++) {
    for (let kk = 0; kk < k; kk++) {
      const av = A[a0 + i * lda + kk];
      const rb = kk * sbk, rc = i * n;
      for (let j = 0; j < n; j++) c[rc + j] += av * B[rb + j * sbn];
    }
  }
  return { c, ldc: n };
}
