// An input gradient of a stride-1 convolution (conv-cpu.ts `transposes`) computed as the transpose it
// is: a product of Og * KP rows by the input, then col2im in the gemm's memory. It comes with the gemm
// (gemm-wasm.ts makes it the gemm's `transposedConv`): in a browser build, a chunk loaded as kiln loads,
// not part of what a page loads first; until then convolutions take conv-cpu.ts's other paths.

import type { ConvAttrs, ConvGeometry } from '../ir/conv.ts';
import type { View } from '../ir/view.ts';
import { grow, packWeight, unfolding, type F32 } from './conv-cpu.ts';
import type { Gemm } from './gemm-wasm.ts';

let wScratch: F32 = new Float32Array(0), vScratch: F32 = new Float32Array(0);

/**
 * A transposed convolution (see transposes) as the transpose it is: cols = V @ x, a product of Og * KP
 * rows (output channel o, window position t: the weight, window reversed) by the input's positions over
 * its Cg channels, then col2im: each product row added into the output shifted by its window position.
 * The gemm does both in one job, image by image (Gemm.scattered): a part adds an image's rows while they
 * are in cache. The same sums as the direct form, in another order.
 */
export function transposedConv(gemm: Gemm, a: ConvAttrs, x: Float32Array, xv: View, w: Float32Array, wv: View, geo: ConvGeometry): Float32Array {
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
