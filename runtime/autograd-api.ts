// `kiln.autograd`: `grad` (gradients of outputs with respect to inputs, without touching `.grad`; it
// lives with the tape, ./autograd.ts), and `gradcheck` / `gradgradcheck` (analytic Jacobians against
// central differences in float64, as PyTorch's). The two checks are async, so they live in
// ./gradcheck.ts, imported on their first call: in kiln's browser build a chunk of its own
// (tests/bundle.test.ts checks that this module exports what ./gradcheck.ts does).

import type { GradcheckOptions, TensorFn } from './gradcheck.ts';
import type { Tensor } from './tensor.ts';

export { grad, type GradOptions } from './autograd.ts';
export type { Compiler, GradcheckOptions, TensorFn } from './gradcheck.ts';

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
