// Convolutions whose input the gemm's packers unfold (1-d and 2-d, no zeros between input elements),
// each as few jobs as it can be: an input gradient of a stride-1 convolution as the transpose it is (a
// product of Og * KP rows, then col2im, image by image: Gemm.scattered); a weight gradient's shape by
// the dot kernel, with no packing (Gemm.dotted); a convolution whose product has whole row blocks and
// panels per image straight into its output, with its bias and ReLU (Gemm.placed); else conv-cpu.ts's
// blocks, unfolded by the gemm's packer into its panels, each thread its own. It comes with the gemm
// (gemm-wasm.ts makes it the gemm's `convolve`): in a browser build, a chunk loaded as kiln loads, not
// part of what a page loads first; until then convolutions take conv-cpu.ts's im2col blocks.

import type { ConvAttrs, ConvGeometry } from '../ir/conv.ts';
import { numel } from '../ir/shape.ts';
import type { View } from '../ir/view.ts';
import { convBlocks, grow, packWeight, windowIsRun, type ConvEpilogue, type F32 } from './conv-cpu.ts';
import type { Gemm, Unfolding } from './gemm-wasm.ts';

/** Floats of packed B (the unfolded input) one product may take where the gemm packs it whole first (32 MiB). */
const UNFOLDED = 1 << 23;

/**
 * The convolution of `x` with `w` (as convCpu's, geometry `geo`, its input unfoldable): into `out` (a
 * scratch of the result's size), or with `epi` straight into the caller's output with its epilogue
 * (then null) where the gemm can place it.
 */
export function convolveUnfolded(gemm: Gemm, a: ConvAttrs, x: Float32Array, xv: View, w: Float32Array, wv: View, geo: ConvGeometry, out: Float32Array, epi?: ConvEpilogue): Float32Array | null {
  const { n: N, groups: G, cin: Cg, cout: Og, kernel, outSize } = geo;
  const nd = kernel.length, KP = numel(kernel), P = numel(outSize), Kc = Cg * KP;
  if (transposes(a, kernel)) return transposedConv(gemm, a, x, xv, w, wv, geo);
  const ws = wv.strides, last = ws.length - 1;
  if (!a.flip && ws[last] === 1) {
    // A weight gradient's shape (unpadded window rows of whole vectors, a small C over a long k): the
    // dot kernel reads both operands where they are, with no packing
    const u0 = unfolding(a, x, xv, geo.inSize, kernel, outSize, 0, 0, 0);
    if (gemm.dots(u0, Og, N * P, Kc)) {
      for (let g = 0; g < G; g++) {
        const aw = { a: w, off: wv.offset + g * ws[0], sRow: ws[1], sImage: ws[2], sRun: nd === 2 ? ws[3] : 0 };
        gemm.dotted(aw, g ? unfolding(a, x, xv, geo.inSize, kernel, outSize, 0, g, 0) : u0, Og, N * P, Kc, { out, at: g * Og * P, image: G * Og * P, images: N });
      }
      return out;
    }
  }
  // the caller's output and epilogue, where the gemm can write them
  const into = epi && gemm.readsInPlace(epi.out) ? epi : null;
  const target = into?.out ?? out;
  if (gemm.placesImages(Og, P) && gemm.readsInPlace(target)) {
    // whole row blocks and panels per image: each image's product straight into the output's layout,
    // one job for all images, and the epilogue applied there
    const wp = (wScratch = grow(wScratch, Og * Kc, gemm.threads)), kIdx = new Int32Array(nd), at = into?.at ?? 0;
    for (let g = 0; g < G; g++) {
      packWeight(wp, w, wv, g, Og, Cg, kernel, a.flip, kIdx);
      const bias = into?.bias ? { b: into.bias, at: into.biasAt + g * Og } : undefined;
      gemm.placed(wp, 0, Kc, 1, unfolding(a, x, xv, geo.inSize, kernel, outSize, 0, g, 0), Og, N * P, Kc, { out: target, at: at + g * Og * P, image: G * Og * P, images: N, bias, relu: into?.relu });
    }
    return into ? null : out;
  }
  // Blocks. Where the gemm packs the unfolded input a chunk of panels at a time, each thread into a
  // buffer of its own, one product takes the whole input (the weight packed once, one job); a product
  // split along k reads the weight where it is when it can (in the pool's memory, a run of KP floats per
  // output and input channel, not flipped) instead of a packed copy (a weight gradient's "weight" is the
  // output gradient).
  const streams = gemm.streamsUnfolded(Og, N * P, Kc);
  const direct = streams && gemm.splitsK(Og, N * P, Kc) && !a.flip && gemm.readsInPlace(w) && windowIsRun(ws, kernel);
  return convBlocks(a, geo, w, wv, out, streams ? Infinity : UNFOLDED, gemm.threads, !direct, (wp, g, b0, nbc, c0, icc) => {
    const u = unfolding(a, x, xv, geo.inSize, kernel, outSize, b0, g, c0);
    return wp ? gemm.unfolded(wp, c0 * KP, Kc, 1, u, Og, nbc * P, icc * KP)
      : gemm.unfolded(w, wv.offset + g * ws[0] + c0 * ws[2], ws[1], 1, u, Og, nbc * P, icc * KP, undefined, { length: KP, stride: ws[2] });
  });
}

/**
 * The input block of images b0.., group g, channels c0.. as the gemm's unfolding packer reads it
 * (gemm-wasm.ts Unfolding): a 1-d convolution is a 2-d one with a single row.
 */
function unfolding(a: ConvAttrs, x: Float32Array, xv: View, inSize: number[], kernel: number[], outSize: number[], b0: number, g: number, c0: number): Unfolding {
  const s = xv.strides, two = kernel.length === 2;
  const h = (v: readonly number[], one: number) => (two ? v[0] : one), w = (v: readonly number[]) => v[kernel.length - 1];
  return {
    x, off: xv.offset + b0 * s[0] + g * s[1] + c0 * s[2], sN: s[0], sC: s[2], sH: two ? s[3] : 0, sW: w(s.slice(3)),
    kh: h(kernel, 1), kw: w(kernel), oh: h(outSize, 1), ow: w(outSize), h: h(inSize, 1), w: w(inSize),
    strideH: h(a.stride, 1), strideW: w(a.stride), dilationH: h(a.dilation, 1), dilationW: w(a.dilation), padH: h(a.padLo, 0), padW: w(a.padLo),
  };
}

/**
 * Whether a convolution is the transpose of a stride-1 one -- an input gradient: stride 1, full padding
 * dilation * (k - 1) on both sides, a window of more than one element. Such a convolution reads each
 * input element with every window position: computed directly, its unfolded input is KP times the
 * input, padding included, and its product has only Og rows to amortise packing that over (an input
 * gradient's Og is the forward's input channels, often few).
 */
function transposes(a: ConvAttrs, kernel: number[]): boolean {
  return kernel.some((k) => k > 1) && kernel.every((k, d) => a.stride[d] === 1 && a.padLo[d] === a.dilation[d] * (k - 1) && a.padHi[d] === a.padLo[d]);
}

let wScratch: F32 = new Float32Array(0), vScratch: F32 = new Float32Array(0);

/**
 * A transposed convolution (see transposes) as the transpose it is: cols = V @ x, a product of Og * KP
 * rows (output channel o, window position t: the weight, window reversed) by the input's positions over
 * its Cg channels, then col2im: each product row added into the output shifted by its window position.
 * The gemm does both in one job, image by image (Gemm.scattered): a part adds an image's rows while they
 * are in cache. The same sums as the direct form, in another order.
 */
function transposedConv(gemm: Gemm, a: ConvAttrs, x: Float32Array, xv: View, w: Float32Array, wv: View, geo: ConvGeometry): Float32Array {
  const { n: N, groups: G, cin: Cg, cout: Og, kernel, outSize, inSize } = geo;
  const two = kernel.length === 2;
  const [kh, kw] = two ? kernel : [1, kernel[0]], [dh, dw] = two ? a.dilation : [1, a.dilation[0]];
  const [H, W] = two ? outSize : [1, outSize[0]];
  const KP = kh * kw, Kc = Cg * KP, P = H * W, M = Og * KP, total = N * G * Og * P;
  const wp = (wScratch = grow(wScratch, Og * Kc));
  const v = (vScratch = grow(vScratch, M * Cg, gemm.threads)); // the product's A: read in place from the pool's memory
  // the input read as a 1 x 1 window: B[c, (image, y, x)] = x[image, g, c, y, x]
  const ones = kernel.map(() => 1), zeros = kernel.map(() => 0);
  const unit: ConvAttrs = { ...a, stride: ones, dilation: ones, padLo: zeros, padHi: zeros };
  // The output lives in the gemm's memory, where the product's rows are added to it.
  gemm.region(total).fill(0);
  for (let g = 0; g < G; g++) {
    packWeight(wp, w, wv, g, Og, Cg, kernel, a.flip, new Int32Array(kernel.length));
    // V[o * KP + t, c] = wp[o, c * KP + KP - 1 - t]: window position t of the output reads input t before it
    for (let o = 0; o < Og; o++) for (let t = 0; t < KP; t++) for (let c = 0; c < Cg; c++) v[(o * KP + t) * Cg + c] = wp[o * Kc + c * KP + KP - 1 - t];
    const u = unfolding(unit, x, xv, inSize, ones, inSize, 0, g, 0);
    gemm.scattered(v, 0, Cg, 1, u, M, N * u.h * u.w, Cg, { at: g * Og * P, image: G * Og * P, channel: P, channels: Og, images: N, kh, kw, dh, dw, outWidth: W });
  }
  const out = gemm.region(total); // the same floats (the product may have moved the scratch under the old view)
  gemm.region(0);
  return out;
}
