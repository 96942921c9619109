// Convolution on the CPU: im2col in blocks through the WebAssembly SIMD gemm (runtime/gemm-wasm.ts).
// Per group, the weight is packed once as a [Og, Cg * K] matrix; then blocks of columns (whole images'
// output positions) and rows (input channels x window) of the unfolded input are built in a reusable
// scratch and multiplied by it, accumulating over row blocks. No unfold of the whole input is ever
// materialised: a block is about BLOCK floats. The result is the natural layout [N, G, Og, ...O];
// generated kernels (compiler/codegen/js.ts) apply the fused epilogue (bias, activation, an optimizer
// update) while copying it out. The gradients are convolutions too (runtime/conv-vjp.ts), so they take
// the same path.

import { convGeometry, type ConvAttrs } from '../ir/conv.ts';
import { numel } from '../ir/shape.ts';
import type { View } from '../ir/view.ts';
import { gemm as wasmGemm, type Gemm } from './gemm-wasm.ts';

/** Floats in one block of the unfolded input (4 MiB: big enough to amortise packing the weight block). */
const BLOCK = 1 << 20;

type F32 = Float32Array<ArrayBuffer>;
let colScratch: F32 = new Float32Array(0), wScratch: F32 = new Float32Array(0), outScratch: F32 = new Float32Array(0);
const grow = (a: F32, n: number): F32 => (a.length >= n ? a : new Float32Array(Math.max(n, a.length * 2)));

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
 * The convolution of `x` (read through view `xv`, shape [N, G, Cg, ...S]) with `w` (view `wv`,
 * [G, Og, Cg, ...K]) as a contiguous [N, G, Og, ...O] array. The array is a scratch reused by the next
 * call: copy it out before convolving again.
 */
export function convCpu(a: ConvAttrs, x: Float32Array, xv: View, w: Float32Array, wv: View, gemm: Gemm | null = wasmGemm): Float32Array {
  const geo = convGeometry(xv.shape, wv.shape, a);
  const { n: N, groups: G, cin: Cg, cout: Og, kernel, outSize } = geo;
  const nd = kernel.length;
  const KP = numel(kernel), P = numel(outSize), Kc = Cg * KP;
  const out = (outScratch = grow(outScratch, N * G * Og * P));
  const tables = positionTables(a, geo.inSize, kernel, outSize);
  // Blocks: enough columns to amortise packing the weight block (>= 256, >= 2 Og), then as many input
  // channels as fit the block budget.
  const nb = Math.min(N, Math.max(1, Math.ceil(Math.max(256, 2 * Og) / P)));
  const icb = Math.min(Cg, Math.max(1, Math.floor(BLOCK / (KP * nb * P))));
  const wp = (wScratch = grow(wScratch, Og * Kc));
  const col = (colScratch = grow(colScratch, icb * KP * nb * P));
  const kIdx = new Int32Array(nd), oIdx = new Int32Array(nd);
  // The unfolded block is written along whichever of the window and the output is longer in the
  // last dim: a weight gradient's "window" is the whole output (24 x 24) and its output the kernel (3 x 3).
  const byWindow = kernel[nd - 1] > outSize[nd - 1];
  for (let g = 0; g < G; g++) {
    packWeight(wp, w, wv, g, Og, Cg, kernel, a.flip, kIdx);
    for (let b0 = 0; b0 < N; b0 += nb) {
      const nbc = Math.min(nb, N - b0), cols = nbc * P;
      for (let c0 = 0; c0 < Cg; c0 += icb) {
        const icc = Math.min(icb, Cg - c0), rows = icc * KP;
        if (byWindow) im2colT(col, rows, x, xv, tables, g, b0, nbc, c0, icc, kernel, outSize, kIdx, oIdx);
        else im2col(a, col, cols, x, xv, tables, g, b0, nbc, c0, icc, kernel, outSize, kIdx, oIdx);
        const [sbk, sbn] = byWindow ? [1, rows] : [cols, 1];
        const prod = gemm ? gemm(wp, c0 * KP, Kc, 1, col, 0, sbk, sbn, Og, cols, rows) : jsGemm(wp, c0 * KP, Kc, col, sbk, sbn, cols, Og, rows);
        const c = prod.c, ldc = prod.ldc;
        for (let bi = 0; bi < nbc; bi++) {
          for (let o = 0; o < Og; o++) {
            const dst = (((b0 + bi) * G + g) * Og + o) * P, src = o * ldc + bi * P;
            if (c0 === 0) for (let p = 0; p < P; p++) out[dst + p] = c[src + p];
            else for (let p = 0; p < P; p++) out[dst + p] += c[src + p];
          }
        }
      }
    }
  }
  return out;
}

/** wp[o, c * KP + k] = w[g, o, c, k] (window reversed when `flip`), read through the weight's view. */
function packWeight(wp: Float32Array, w: Float32Array, wv: View, g: number, Og: number, Cg: number, kernel: number[], flip: boolean, kIdx: Int32Array): void {
  const nd = kernel.length, KP = numel(kernel);
  const s = wv.strides;
  for (let o = 0; o < Og; o++) {
    for (let c = 0; c < Cg; c++) {
      const base = wv.offset + g * s[0] + o * s[1] + c * s[2];
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

/**
 * The input offset of a window position's leading spatial dims (all but the last): base plus each
 * dim's table index times its stride, or -1 when any of them falls outside the input (padding).
 */
function leadOffset(base: number, tables: Int32Array[], kIdx: Int32Array, oIdx: Int32Array, outSize: number[], s: readonly number[], last: number): number {
  let off = base;
  for (let d = 0; d < last; d++) {
    const i = tables[d][kIdx[d] * outSize[d] + oIdx[d]];
    if (i < 0) return -1;
    off += i * s[3 + d];
  }
  return off;
}

/**
 * col[(c - c0) * KP + k, (b - b0) * P + p] = x[b, g, c, pos(p, k)] (0 outside the input) for the
 * channels c0.. c0 + icc and images b0 .. b0 + nbc; the last spatial dim is the inner loop.
 */
function im2col(a: ConvAttrs, col: Float32Array, cols: number, x: Float32Array, xv: View, tables: Int32Array[], g: number, b0: number, nbc: number, c0: number, icc: number,
  kernel: number[], outSize: number[], kIdx: Int32Array, oIdx: Int32Array): void {
  const nd = kernel.length, KP = numel(kernel), P = numel(outSize);
  const s = xv.strides;
  const last = nd - 1, OL = outSize[last], sL = s[3 + last], tL = tables[last];
  const SL = xv.shape[3 + last], sSt = a.stride[last], dL = a.dilation[last], loL = a.padLo[last], ldL = a.lhsDilation[last];
  const lead = P / OL;
  for (let c = 0; c < icc; c++) {
    kIdx.fill(0);
    for (let kf = 0; kf < KP; kf++) {
      const row = ((c * KP + kf) * cols);
      const tOff = kIdx[last] * OL;
      for (let bi = 0; bi < nbc; bi++) {
        const base = xv.offset + (b0 + bi) * s[0] + g * s[1] + (c0 + c) * s[2];
        oIdx.fill(0);
        for (let l = 0; l < lead; l++) {
          const dst = row + bi * P + l * OL;
          const off = leadOffset(base, tables, kIdx, oIdx, outSize, s, last);
          if (off < 0) col.fill(0, dst, dst + OL);
          else if (ldL === 1) {
            // q = o * stride + k * dilation - padLo runs over the input in steps: zeros, a strided copy, zeros
            const q0 = kIdx[last] * dL - loL;
            const o0 = Math.min(OL, Math.max(0, Math.ceil(-q0 / sSt))), o1 = Math.min(OL, Math.max(o0, Math.floor((SL - 1 - q0) / sSt) + 1));
            col.fill(0, dst, dst + o0);
            const step = sSt * sL;
            for (let o = o0, at = off + (q0 + o0 * sSt) * sL; o < o1; o++, at += step) col[dst + o] = x[at];
            col.fill(0, dst + o1, dst + OL);
          } else {
            for (let o = 0; o < OL; o++) {
              const i = tL[tOff + o];
              col[dst + o] = i < 0 ? 0 : x[off + i * sL];
            }
          }
          for (let d = last - 1; d >= 0 && ++oIdx[d] === outSize[d]; d--) oIdx[d] = 0;
        }
      }
      for (let d = last; d >= 0 && ++kIdx[d] === kernel[d]; d--) kIdx[d] = 0;
    }
  }
}

/**
 * The same block transposed: col[(b - b0) * P + p, (c - c0) * KP + k], the last window dim inner.
 */
function im2colT(col: Float32Array, rows: number, x: Float32Array, xv: View, tables: Int32Array[], g: number, b0: number, nbc: number, c0: number, icc: number,
  kernel: number[], outSize: number[], kIdx: Int32Array, oIdx: Int32Array): void {
  const nd = kernel.length, KP = numel(kernel), P = numel(outSize);
  const s = xv.strides;
  const last = nd - 1, KL = kernel[last], OL = outSize[last], sL = s[3 + last], tL = tables[last];
  const lead = KP / KL;
  for (let bi = 0; bi < nbc; bi++) {
    oIdx.fill(0);
    for (let p = 0; p < P; p++) {
      const rowBase = (bi * P + p) * rows, oL = oIdx[last];
      for (let c = 0; c < icc; c++) {
        const base = xv.offset + (b0 + bi) * s[0] + g * s[1] + (c0 + c) * s[2];
        kIdx.fill(0);
        for (let l = 0; l < lead; l++) {
          const dst = rowBase + c * KP + l * KL;
          const off = leadOffset(base, tables, kIdx, oIdx, outSize, s, last);
          if (off < 0) col.fill(0, dst, dst + KL);
          else {
            for (let k = 0; k < KL; k++) {
              const i = tL[k * OL + oL];
              col[dst + k] = i < 0 ? 0 : x[off + i * sL];
            }
          }
          for (let d = last - 1; d >= 0 && ++kIdx[d] === kernel[d]; d--) kIdx[d] = 0;
        }
      }
      for (let d = last; d >= 0 && ++oIdx[d] === outSize[d]; d--) oIdx[d] = 0;
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
