// `kiln.autograd`: `grad` (gradients of outputs with respect to inputs, without touching `.grad`), and
// `gradcheck` / `gradgradcheck` (analytic Jacobians against central differences in float64, as
// PyTorch's). The two checks are async, so they live in ./gradcheck.ts, imported on their first call: in
// kiln's browser build a chunk of its own (tests/bundle.test.ts checks that these are its exports).

import { fmt, sameShape } from '../ir/shape.ts';
import { noGrad, runBackward } from './autograd.ts';
import type { GradcheckOptions, TensorFn } from './gradcheck.ts';
import { full, type Tensor } from './tensor.ts';

export type { Compiler, GradcheckOptions, TensorFn } from './gradcheck.ts';

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

type Checks = typeof import('./gradcheck.ts');
let checks: Promise<Checks> | undefined;

function load(): Promise<Checks> {
  checks ??= import('./gradcheck.ts').catch((e: unknown) => {
    checks = undefined; // a later call may try again
    throw new Error(`gradcheck: cannot load kiln's gradcheck module: ${e instanceof Error ? e.message : String(e)}`);
  });
  return checks;
}

/** `await kiln.autograd.gradcheck(fn, inputs, opts)`: ./gradcheck.ts's gradcheck (true, or an Error naming the mismatches). */
export async function gradcheck(fn: TensorFn, inputs: Tensor | Tensor[], opts?: GradcheckOptions): Promise<boolean> {
  return (await load()).gradcheck(fn, inputs, opts);
}

/** `await kiln.autograd.gradgradcheck(fn, inputs, opts)`: ./gradcheck.ts's gradgradcheck (gradcheck of the first derivative). */
export async function gradgradcheck(fn: TensorFn, inputs: Tensor | Tensor[], opts?: GradcheckOptions & { gradOutput?: Tensor }): Promise<boolean> {
  return (await load()).gradgradcheck(fn, inputs, opts);
}
