// The convolution machinery on its own, against PyTorch's golden conv.json: the option rules
// (ir/conv.ts), the CPU kernel (runtime/conv-cpu.ts, im2col blocks through the WebAssembly gemm and
// its JavaScript fallback) and the VJP math (runtime/conv-vjp.ts: both gradients as convolutions
// through permuted views), with plain arrays standing in for tensors.
import { describe, expect, it } from 'vitest';
import { convParams, convShape, naturalOrder, type ConvAttrs, type ConvOptions } from '../ir/conv.ts';
import { numel } from '../ir/shape.ts';
import { contiguousView, permuteView, type View } from '../ir/view.ts';
import { convCpu } from '../runtime/conv-cpu.ts';
import { gemm } from '../runtime/gemm-wasm.ts';
import { convVjp } from '../runtime/conv-vjp.ts';
import type { Tensor } from '../runtime/tensor.ts';
import { describeMismatch, loadGolden, type GTensor, type OpCase } from './golden.ts';

/** A stand-in for a tensor: an array read through a view (what convVjp needs: shape, permute, requiresGrad). */
class Arr {
  constructor(readonly data: Float32Array, readonly view: View, readonly requiresGrad = true) {}
  get shape(): readonly number[] { return this.view.shape; }
  get ndim(): number { return this.view.shape.length; }
  permute(perm: number[]): Arr { return new Arr(this.data, permuteView(this.view, perm), this.requiresGrad); }
  reshape(shape: number[]): Arr { return new Arr(this.contiguous(), contiguousView(shape), this.requiresGrad); }
  contiguous(): Float32Array {
    const out = new Float32Array(numel(this.shape));
    const idx = new Array<number>(this.ndim).fill(0);
    for (let i = 0; i < out.length; i++) {
      out[i] = this.data[this.view.offset + idx.reduce((s, v, d) => s + v * this.view.strides[d], 0)];
      for (let d = this.ndim - 1; d >= 0 && ++idx[d] === this.shape[d]; d--) idx[d] = 0;
    }
    return out;
  }
}
const arr = (g: GTensor) => new Arr(Float32Array.from(g.data), contiguousView(g.shape));
const call = (gemmOn: boolean) => (x: Arr, w: Arr, a: ConvAttrs): Arr => {
  const out = convCpu(a, x.data, x.view, w.data, w.view, gemmOn ? gemm : null);
  const natural = convShape(x.shape, w.shape, { ...a, outPerm: naturalOrder(x.ndim - 3) });
  return new Arr(out.slice(0, numel(natural)), contiguousView(natural)).permute(a.outPerm);
};

/** F.conv1d / F.conv2d over arrays: the grouped layout of the primitive, then back. */
function fakeConv(nd: number, gemmOn: boolean, record: { x?: Arr; w?: Arr; attrs?: ConvAttrs; groups?: number }) {
  return (x: Arr, w: Arr, b: Arr | null, opts: ConvOptions = {}): Arr => {
    const { attrs, groups } = convParams(`conv${nd}d`, x.shape, w.shape, opts, nd);
    const xg = x.reshape([x.shape[0], groups, x.shape[1] / groups, ...x.shape.slice(2)]);
    const wg = w.reshape([groups, w.shape[0] / groups, ...w.shape.slice(1)]);
    Object.assign(record, { x: xg, w: wg, attrs, groups });
    const out = call(gemmOn)(xg, wg, attrs);
    const shape = [x.shape[0], w.shape[0], ...out.shape.slice(3)];
    const data = out.data;
    if (b) { const P = numel(shape.slice(2)); for (let i = 0; i < data.length; i++) data[i] += b.data[Math.floor(i / P) % shape[1]]; }
    return new Arr(data, contiguousView(shape));
  };
}

const cases = loadGolden('conv').cases.filter((c): c is OpCase => c.kind === 'op' && /^F\.conv[12]d\(x, w, (b|null)(, \{[^}]*\})?\)$/.test(c.expr));

for (const gemmOn of [true, false]) {
  describe(`conv on the CPU (${gemmOn ? 'WebAssembly gemm' : 'JavaScript fallback'}), golden conv.json`, () => {
    it('has the plain F.conv cases', () => expect(cases.length).toBeGreaterThanOrEqual(10));
    for (const c of cases) {
      it(c.name, () => {
        const rec: { x?: Arr; w?: Arr; attrs?: ConvAttrs; groups?: number } = {};
        const names = Object.keys(c.inputs);
        const xs = names.map((n) => arr(c.inputs[n]));
        const F = { conv1d: fakeConv(1, gemmOn, rec), conv2d: fakeConv(2, gemmOn, rec) };
        // eslint-disable-next-line no-new-func
        const out = new Function('F', ...names, `return ${c.expr};`)(F, ...xs) as Arr;
        expect([...out.shape]).toEqual(c.output.shape);
        const m = describeMismatch(out.data, c.output.data, c.tol, false, c.output.shape);
        if (m) throw new Error(`${c.name}: output: ${m}`);
        // gradients: g in the grouped layout, then back to the user's shapes
        const gOut = c.gradOutput!;
        const G = rec.groups!;
        const g = arr(gOut).reshape([gOut.shape[0], G, gOut.shape[1] / G, ...gOut.shape.slice(2)]);
        const x = new Arr(rec.x!.data, rec.x!.view, c.inputs.x.requiresGrad ?? false);
        const [dx, dw] = convVjp(g as unknown as Tensor, x as unknown as Tensor, rec.w! as unknown as Tensor, rec.attrs!, call(gemmOn) as unknown as Parameters<typeof convVjp>[4]) as unknown as [Arr | null, Arr | null];
        for (const [name, got] of [['x', dx], ['w', dw]] as const) {
          const want = c.grads[name];
          if (!want) { expect(got).toBeNull(); continue; }
          const flat = got!.contiguous();
          const m2 = describeMismatch(flat, want.data, c.tol, false, want.shape);
          if (m2) throw new Error(`${c.name}: grad of ${name}: ${m2}`);
        }
      });
    }
  });
}

/** The worst relative difference between convCpu with the gemm and its JavaScript fallback, on made-up data. */
function worstAgainstFallback(a: ConvAttrs, xs: number[], ws: number[]): number {
  const x = Float32Array.from({ length: numel(xs) }, (_, i) => Math.sin(i * 0.7)), w = Float32Array.from({ length: numel(ws) }, (_, i) => Math.cos(i * 0.3));
  const n = numel(convShape(xs, ws, a));
  const got = convCpu(a, x, contiguousView(xs), w, contiguousView(ws), gemm).slice(0, n);
  const want = convCpu(a, x, contiguousView(xs), w, contiguousView(ws), null).slice(0, n);
  return Math.max(...Array.from(got, (v, i) => Math.abs(v - want[i]) / (1 + Math.abs(want[i]))));
}

describe('an input gradient (stride 1, full padding) computed as the transpose it is: col2im of a product', () => {
  // [N, G, Cg, ...S] input, [G, Og, Cg, ...K] weight, dilation: against the im2col blocks of the
  // JavaScript fallback (checked against PyTorch above), 2-d and 1-d, grouped, dilated, flipped or not
  const configs = [
    { x: [3, 1, 5, 6, 7], w: [1, 4, 5, 3, 3], d: [1, 1], flip: true },
    { x: [2, 2, 3, 5, 9], w: [2, 3, 3, 2, 3], d: [2, 1], flip: false },
    { x: [2, 1, 4, 11], w: [1, 6, 4, 3], d: [3], flip: true },
    { x: [1, 1, 9, 4, 4], w: [1, 2, 9, 3, 1], d: [1, 1], flip: true },
  ];
  for (const { x: xs, w: ws, d, flip } of configs) {
    it(`x ${JSON.stringify(xs)}, w ${JSON.stringify(ws)}, dilation ${JSON.stringify(d)}${flip ? ', flipped' : ''}`, () => {
      const k = ws.slice(3), pad = k.map((kk, i) => d[i] * (kk - 1));
      const a: ConvAttrs = { stride: k.map(() => 1), lhsDilation: k.map(() => 1), dilation: d, padLo: pad, padHi: pad, flip, outPerm: naturalOrder(k.length) };
      expect(worstAgainstFallback(a, xs, ws)).toBeLessThanOrEqual(1e-5);
    });
  }
});

/**
 * Unpadded convolutions ([N, G, Cg, ...S] input, [G, Og, Cg, ...K] weight, stride, dilation) against the
 * JavaScript fallback's im2col blocks (checked against PyTorch above).
 */
function itMatchesFallbackUnpadded(configs: { x: number[]; w: number[]; stride: number[]; dilation: number[] }[]): void {
  for (const { x: xs, w: ws, stride, dilation } of configs) {
    it(`x ${JSON.stringify(xs)}, w ${JSON.stringify(ws)}, stride ${JSON.stringify(stride)}, dilation ${JSON.stringify(dilation)}`, () => {
      const zeros = stride.map(() => 0);
      const a: ConvAttrs = { stride, lhsDilation: stride.map(() => 1), dilation, padLo: zeros, padHi: zeros, flip: false, outPerm: naturalOrder(stride.length) };
      // the fallback adds in float32, one term at a time: its own error grows with k (channels x window)
      const k = ws[2] * ws.slice(3).reduce((p, q) => p * q, 1);
      expect(worstAgainstFallback(a, xs, ws)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.sqrt(k / 256)));
    });
  }
}

describe('a convolution without padding: the unfolding packer copies whole panels, stepping its offset', () => {
  // [N, G, Cg, ...S] input, [G, Og, Cg, ...K] weight: more than one block of k (256) per product, a
  // block starting inside a window, strides and dilations in either dim, panels inside one output row and across two
  const configs = [
    { x: [2, 1, 40, 10, 18], w: [1, 5, 40, 3, 3], stride: [1, 1], dilation: [1, 1] },
    { x: [2, 1, 7, 12, 20], w: [1, 6, 7, 2, 3], stride: [2, 1], dilation: [2, 2] },
    { x: [3, 1, 30, 21], w: [1, 4, 30, 5], stride: [1], dilation: [1] },
    // whole row blocks and panels per image (8 channels, 4 x 8 positions), two groups: each image's
    // product written straight into the output (Gemm.placed)
    { x: [3, 2, 4, 6, 10], w: [2, 8, 4, 3, 3], stride: [1, 1], dilation: [1, 1] },
  ];
  itMatchesFallbackUnpadded(configs);
});

describe("a weight gradient's unfolding (no padding, window rows of 4 or more floats) packed by window rows", () => {
  // [N, G, Cg, ...S] input, [G, Og, Cg, ...K] "weight" (an output gradient), stride and dilation as a
  // weight gradient has them: against the JavaScript fallback's im2col blocks (checked against PyTorch
  // above). Blocks of k (256) start inside window rows; the last panel of 8 columns is partial.
  const configs = [
    { x: [5, 1, 7, 12, 13], w: [1, 6, 7, 9, 10], stride: [1, 1], dilation: [1, 1] },
    { x: [3, 1, 4, 11, 17], w: [1, 5, 4, 5, 7], stride: [1, 2], dilation: [2, 1] },
    { x: [2, 1, 6, 29], w: [1, 3, 6, 23], stride: [1], dilation: [1] },
    // window rows of whole vectors over a long k: the dot kernel (no packing), strided and dilated too
    { x: [3, 1, 8, 18, 19], w: [1, 6, 8, 16, 16], stride: [1, 1], dilation: [1, 1] },
    { x: [2, 1, 24, 40, 21], w: [1, 5, 24, 12, 8], stride: [1, 2], dilation: [2, 1] },
  ];
  itMatchesFallbackUnpadded(configs);
});

describe('conv options: bad input is a clear error naming the op and the shapes', () => {
  const p = (x: number[], w: number[], o: ConvOptions = {}, nd = 2) => () => convParams(`conv${nd}d`, x, w, o, nd);
  it('channels that do not match the weight', () => {
    expect(p([2, 3, 7, 7], [4, 2, 3, 3])).toThrow('conv2d: input [2, 3, 7, 7] has 3 channels but weight [4, 2, 3, 3] expects 2');
  });
  it('a kernel larger than the padded input', () => {
    expect(p([1, 1, 4, 4], [1, 1, 5, 5])).toThrow('conv2d: kernel [5, 5] is larger than the padded input [4, 4]');
    expect(p([1, 1, 4, 4], [1, 1, 3, 3], { dilation: 2 })).toThrow('with dilation [2, 2] (span [5, 5]) is larger than the padded input [4, 4]');
    expect(p([1, 1, 4, 4], [1, 1, 5, 5], { padding: 1 })).not.toThrow();
  });
  it('groups not dividing the channels', () => {
    expect(p([1, 4, 5, 5], [6, 2, 3, 3], { groups: 3 })).toThrow("conv2d: groups 3 does not divide the input's 4 channels (input [1, 4, 5, 5])");
    expect(p([1, 6, 5, 5], [4, 2, 3, 3], { groups: 3 })).toThrow("conv2d: groups 3 does not divide the weight's 4 output channels (weight [4, 2, 3, 3])");
  });
  it('wrong ranks, strides and padding', () => {
    expect(p([2, 3, 7], [4, 3, 3, 3])).toThrow('conv2d: expected a 4-d input [N, C, H, W], got [2, 3, 7]');
    expect(p([2, 3, 7], [4, 3, 3, 3], {}, 1)).toThrow('conv1d: expected a 3-d weight');
    expect(p([1, 1, 5, 5], [1, 1, 3, 3], { stride: 0 })).toThrow('conv2d: stride must be a positive integer or 2 of them, got 0');
    expect(p([1, 1, 5, 5], [1, 1, 3, 3], { padding: [1, 2, 3] })).toThrow('conv2d: padding must be a non-negative integer or 2 of them, got [1,2,3]');
    expect(p([1, 1, 5, 5], [1, 1, 3, 3], { padding: 'same', stride: 2 })).toThrow("conv2d: padding='same' is not supported for strided convolutions (stride [2, 2])");
  });
  it("padding 'same' with an even kernel puts the extra row on the high side (as PyTorch)", () => {
    const { attrs } = convParams('conv2d', [1, 1, 6, 6], [1, 1, 4, 2], { padding: 'same' }, 2);
    expect([attrs.padLo, attrs.padHi]).toEqual([[1, 0], [2, 1]]);
    expect(convShape([1, 1, 1, 6, 6], [1, 1, 1, 4, 2], attrs)).toEqual([1, 1, 1, 6, 6]);
  });
});
