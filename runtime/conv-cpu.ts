// Convolution on the CPU: im2col in blocks through the WebAssembly SIMD gemm (runtime/gemm-wasm.ts).
// Per group, the weight is packed once as a [Og, Cg * K] matrix; then blocks of columns (whole images'
// output positions) and rows (input channels x window) of the unfolded input are built in a reusable
// scratch and multiplied by it, accumulating over row blocks. No unfold of the whole input is ever
// materialised: a block is about BLOCK floats. The result is the natural layout [N, G, Og, ...O];
// generated kernels (compiler/codegen/js.ts) apply the fused epilogue (bias, activation, an optimizer
// update) while copying it out. The gradients are convolutions too (runtime/conv-vjp.ts), so they take
// the same path. 1-d and 2-d convolutions whose input the gemm's packers can unfold go to the gemm's
// own chunk instead (runtime/conv-gemm.ts), which reuses this file's blocks (convBlocks).

import { convGeometry, type ConvAttrs, type ConvGeometry } from '../ir/conv.ts';
import { contiguousStrides, numel } from '../ir/shape.ts';
import type { View } from '../ir/view.ts';
import type { Gemm } from './gemm-wasm.ts';
import type { Pool } from './pool.ts';

/** Floats in one block of the unfolded input (4 MiB: big enough to amortise packing the weight block). */
const BLOCK = 1 << 20;

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
  const nd = kernel.length, KP = numel(kernel), P = numel(outSize);
  const out = (outScratch = grow(outScratch, N * G * Og * P, gemm?.threads)); // split epilogues read it on every thread
  // 1-d and 2-d inputs without zeros between their elements (lhsDilation 1): the gemm's packers unfold them
  if (gemm && nd <= 2 && a.lhsDilation.every((l) => l === 1) && xv.strides.every((st) => st >= 0)) return gemm.convolve(a, x, xv, w, wv, geo, out, epi);
  const tables = positionTables(a, geo.inSize, kernel, outSize);
  const rel = leadOffsets(tables, kernel, outSize, xv.strides);
  // An im2col block is written along whichever of the window and the output is longer in the last
  // dim: a weight gradient's "window" is the whole output (24 x 24) and its output the kernel (3 x 3).
  const byWindow = kernel[nd - 1] > outSize[nd - 1];
  return convBlocks(a, geo, w, wv, out, BLOCK, gemm?.threads ?? null, true, (wp, g, b0, nbc, c0, icc) => {
    const rows = icc * KP, cols = nbc * P, col = (colScratch = grow(colScratch, rows * cols));
    if (byWindow) im2colT(col, rows, x, xv, tables, rel, g, b0, nbc, c0, icc, kernel, outSize);
    else im2col(a, col, cols, x, xv, tables, rel, g, b0, nbc, c0, icc, kernel, outSize);
    const [sbk, sbn] = byWindow ? [1, rows] : [cols, 1];
    return gemm ? gemm(wp!, c0 * KP, Cg * KP, 1, col, 0, sbk, sbn, Og, cols, rows) : jsGemm(wp!, c0 * KP, Cg * KP, col, sbk, sbn, cols, Og, rows);
  });
}

/**
 * A block's product: C (Og rows, `ldc` apart) = the packed weight's columns for channels c0.. (`wp`;
 * null when the product reads the weight itself) times the unfolded input's block of images b0..b0 + nbc
 * and channels c0..c0 + icc.
 */
export type BlockProduct = (wp: Float32Array | null, g: number, b0: number, nbc: number, c0: number, icc: number) => { c: Float32Array; ldc: number };

/**
 * A convolution in blocks into `out` ([N, G, Og, ...O]): enough columns to amortise packing the weight
 * block (>= 256, >= 2 Og), then as many input channels as fit `budget` floats of unfolded input, then,
 * with every channel in, as many images as fit. Each block is one product (a job for every thread), so
 * fewer, bigger blocks cost fewer hand-offs; products over channel blocks are added up. Per group the
 * weight is packed once (unless `packs` is false: the product reads it where it is).
 */
export function convBlocks(a: ConvAttrs, geo: ConvGeometry, w: Float32Array, wv: View, out: Float32Array, budget: number, pool: Pool | null, packs: boolean, product: BlockProduct): Float32Array {
  const { n: N, groups: G, cin: Cg, cout: Og, kernel, outSize } = geo;
  const KP = numel(kernel), P = numel(outSize), Kc = Cg * KP;
  const minImages = Math.min(N, Math.max(1, Math.ceil(Math.max(256, 2 * Og) / P)));
  const icb = Math.min(Cg, Math.max(1, Math.floor(budget / (KP * minImages * P))));
  const nb = icb < Cg ? minImages : Math.min(N, Math.max(minImages, Math.floor(budget / (Kc * P))));
  const wp = packs ? (wScratch = grow(wScratch, Og * Kc, pool)) : null, kIdx = new Int32Array(kernel.length);
  for (let g = 0; g < G; g++) {
    if (wp) packWeight(wp, w, wv, g, Og, Cg, kernel, a.flip, kIdx);
    for (let b0 = 0; b0 < N; b0 += nb) {
      const nbc = Math.min(nb, N - b0);
      for (let c0 = 0; c0 < Cg; c0 += icb) {
        const { c, ldc } = product(wp, g, b0, nbc, c0, Math.min(icb, Cg - c0));
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
export const windowIsRun = (s: readonly number[], kernel: number[]): boolean => contiguousStrides(kernel).every((st, d) => st === s[3 + d] || kernel[d] === 1);

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
