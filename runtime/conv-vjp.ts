// The VJP of the `conv` primitive (ir/conv.ts): both gradients are convolutions again, read through
// permuted views of the operands, never a materialised unfold.
//  - input: the output gradient g convolved with the weight, channels swapped per group and the window
//    reversed (`flip`), g's elements spread `stride` apart (`lhsDilation`, zeros never stored) and the
//    padding mirrored: a transposed convolution.
//  - weight: with the roles of batch and channels swapped, x [Cg, G, N, ...S] convolved with
//    g [G, Og, N, ...O] as the window, stride and dilation exchanged; its natural result [Cg, G, Og, ...K]
//    is written straight in the weight's layout [G, Og, Cg, ...K] (`outPerm`), so that an optimizer
//    update fuses into the kernel computing it.
// Output sizes are pinned by choosing the high padding (it may be negative: that crops).

import { naturalOrder, type ConvAttrs } from '../ir/conv.ts';
import type { Tensor } from './tensor.ts';

export type ConvCall = (x: Tensor, w: Tensor, attrs: ConvAttrs) => Tensor;

/** Gradients of x [N, G, Cg, ...S] and w [G, Og, Cg, ...K] given the output gradient g (output layout). */
export function convVjp(gOut: Tensor, x: Tensor, w: Tensor, a: ConvAttrs, conv: ConvCall): [Tensor | null, Tensor | null] {
  const nd = x.ndim - 3;
  const inverse = new Array<number>(a.outPerm.length);
  a.outPerm.forEach((d, i) => (inverse[d] = i));
  const g = gOut.permute(inverse); // natural layout [N, G, Og, ...O]
  const S = x.shape.slice(3), K = w.shape.slice(3), O = g.shape.slice(3);
  const sp = Array.from({ length: nd }, (_, d) => 3 + d);
  let dx: Tensor | null = null, dw: Tensor | null = null;
  if (x.requiresGrad) {
    dx = conv(g, w.permute([0, 2, 1, ...sp]), {
      stride: [...a.lhsDilation], lhsDilation: [...a.stride], dilation: [...a.dilation], flip: !a.flip, outPerm: naturalOrder(nd),
      padLo: K.map((k, d) => (k - 1) * a.dilation[d] - a.padLo[d]),
      padHi: S.map((s, d) => (s - 1) * a.lhsDilation[d] - (O[d] - 1) * a.stride[d] + a.padLo[d]),
    });
  }
  if (w.requiresGrad) {
    if (!a.flip) {
      dw = conv(x.permute([2, 1, 0, ...sp]), g.permute([1, 2, 0, ...sp]), {
        stride: [...a.dilation], dilation: [...a.stride], lhsDilation: [...a.lhsDilation], flip: false, outPerm: [1, 2, 0, ...sp],
        padLo: [...a.padLo], padHi: K.map((k, d) => (k - 1) * a.dilation[d] + a.stride[d] * (O[d] - 1) - (S[d] - 1) * a.lhsDilation[d] - a.padLo[d]),
      });
    } else {
      // The weight of a transposed convolution is read reversed, so its gradient is reversed too:
      // window position j of it is the correlation of g (spread `stride` apart) with the whole input.
      if (a.lhsDilation.some((l) => l !== 1)) {
        throw new Error(`conv: the weight gradient of a convolution that is itself an input gradient of a strided convolution (lhsDilation ${JSON.stringify(a.lhsDilation)}, a third derivative) is not supported`);
      }
      const lo = K.map((k, d) => (k - 1) * a.dilation[d] - a.padLo[d]);
      dw = conv(g.permute([2, 1, 0, ...sp]), x.permute([1, 2, 0, ...sp]), {
        stride: [...a.dilation], dilation: S.map(() => 1), lhsDilation: [...a.stride], flip: false, outPerm: [1, 0, 2, ...sp],
        padLo: lo, padHi: K.map((k, d) => (k - 1) * a.dilation[d] + S[d] - 1 - (O[d] - 1) * a.stride[d] - lo[d]),
      });
    }
  }
  return [dx, dw];
}
