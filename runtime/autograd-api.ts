// `kiln.autograd.grad`: gradients of outputs with respect to inputs, without touching `.grad`.

import { fmt, sameShape } from '../ir/shape.ts';
import { runBackward } from './autograd.ts';
import { full, Tensor } from './tensor.ts';
import { noGrad } from './autograd.ts';

export interface GradOptions { gradOutputs?: Tensor | (Tensor | null)[]; retainGraph?: boolean; createGraph?: boolean; allowUnused?: boolean }

export function grad(outputs: Tensor | Tensor[], inputs: Tensor | Tensor[], opts: GradOptions = {}): (Tensor | null)[] {
  const outs = Array.isArray(outputs) ? outputs : [outputs];
  const ins = Array.isArray(inputs) ? inputs : [inputs];
  const gos = opts.gradOutputs === undefined ? [] : Array.isArray(opts.gradOutputs) ? opts.gradOutputs : [opts.gradOutputs];
  for (const x of ins) if (!x.requiresGrad) throw new Error('autograd.grad: one of the inputs does not require grad');
  const rootGrads = outs.map((o, i) => {
    if (!o.requiresGrad) throw new Error(`autograd.grad: output ${i} does not require grad and does not have a gradFn`);
    const g = gos[i];
    if (g) {
      if (!sameShape(g.shape, o.shape)) throw new Error(`autograd.grad: gradOutputs[${i}] has shape ${fmt(g.shape)} but output ${i} has shape ${fmt(o.shape)}`);
      return g;
    }
    if (o.numel() !== 1) throw new Error(`autograd.grad: grad can be implicitly created only for scalar outputs (output ${i} has shape ${fmt(o.shape)})`);
    return noGrad(() => full(o.shape, 1, { dtype: o.dtype, device: o.device }));
  });
  const got = runBackward(outs, rootGrads, { retainGraph: opts.retainGraph, createGraph: opts.createGraph }, ins);
  return ins.map((x, i) => {
    const g = got.get(x) ?? null;
    if (!g && !opts.allowUnused) throw new Error(`autograd.grad: input ${i} was not used in the graph (set allowUnused: true to get null)`);
    return g;
  });
}
