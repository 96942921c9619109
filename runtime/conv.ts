// The door from the library (nn/conv.ts) to the primitives it calls directly: `conv` on the grouped
// layout, `pad` with zeros, and `argmax` over a pooling window's axes.

import type { ConvAttrs } from '../ir/conv.ts';
import { dispatch } from './dispatch.ts';
import type { Tensor } from './tensor.ts';

/** x [N, G, Cg, ...S] convolved with w [G, Og, Cg, ...K] into [N, G, Og, ...O] (ir/conv.ts). */
export const convGrouped = (x: Tensor, w: Tensor, attrs: ConvAttrs): Tensor => dispatch('conv', [x, w], attrs);

/** `x` inside zeros, `lo[d]` before and `hi[d]` after each of its last `lo.length` dims (the `pad` primitive). */
export function zeroPad(x: Tensor, lo: readonly number[], hi: readonly number[] = lo): Tensor {
  const lead = x.ndim - lo.length;
  const starts = x.shape.map((_, i) => (i < lead ? 0 : lo[i - lead]));
  const shape = x.shape.map((s, i) => (i < lead ? s : s + lo[i - lead] + hi[i - lead]));
  return dispatch('pad', [x], { starts, steps: shape.map(() => 1), shape });
}

/**
 * The position of the first maximum of `x` over `axes` (a NaN counts as the maximum), counted row-major
 * over them, as int32 with the axes kept at size 1: the `argmax` primitive over several axes at once
 * (a pooling window, which no reshape can merge into one axis without a copy).
 */
export const argmaxOver = (x: Tensor, axes: number[]): Tensor => dispatch('argmax', [x], { axes });
