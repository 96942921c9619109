// A fused chain of 5,000 elementwise ops: the IR walks (ir/kernel.ts), fusion and the shared expression
// emitter are iterative, so such a chain cannot overflow the call stack anywhere from trace to kernel.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { jsSource } from '../compiler/codegen/js.ts';
import { wgslSource } from '../compiler/codegen/wgsl.ts';
import { exprChildren, exprLoads, mapLoads, postorder, type Expr, type KernelSpec } from '../ir/kernel.ts';
import { contiguousView } from '../ir/view.ts';
import { values } from './golden.ts';

const N = 5000;
type Tensor = kiln.Tensor;

/** x + 2 - 1 + 2 - 1 ...: small integers, exact in float32 and float64 alike. */
const chain = (x: Tensor): Tensor => {
  let y = x;
  for (let i = 0; i < N; i++) y = i % 2 === 0 ? y.add(2) : y.sub(1);
  return y;
};

describe('a chain of 5,000 elementwise ops', () => {
  it('walks, rewrites and emits a 5,000-deep expression (JS and WGSL)', () => {
    const x: Expr = { kind: 'load', arg: 0, view: contiguousView([4]), dtype: 'float32' };
    let e: Expr = x;
    for (let i = 0; i < N; i++) e = { kind: 'binary', op: i % 2 === 0 ? 'add' : 'mul', a: e, b: { kind: 'const', value: 2, dtype: 'float32' }, dtype: 'float32' };
    expect(exprLoads(e)).toEqual([x]);
    expect(postorder([e], exprChildren)).toHaveLength(2 * N + 1);
    const moved = mapLoads(e, (l) => ({ ...l, arg: 1 }))!;
    expect(exprLoads(moved).map((l) => l.arg)).toEqual([1]);
    const spec: KernelSpec = {
      name: 'deep',
      args: [{ dtype: 'float32', size: 4 }, { dtype: 'float32', size: 4 }],
      kernel: { kind: 'map', shape: [4], exprs: [e], outputs: [{ arg: 1, view: contiguousView([4]), dtype: 'float32' }] },
      params: 0,
    };
    // one statement per op (the shared literal `2` is one name in WGSL)
    expect(jsSource(spec).split('\n').filter((l) => l.includes('const v')).length).toBe(N + 1);
    expect(wgslSource(spec).code.split('\n').filter((l) => /^\s*let v\d+ = /.test(l)).length).toBe(N + 2);
  });

  it('compiles it into one fused kernel whose result equals eager mode', async () => {
    const x = kiln.tensor([1, -2, 3.5, 0]);
    const step = kiln.compile(chain);
    const l = await step.lower(x);
    expect(l.kernels).toHaveLength(1);
    expect(await values(await step(x))).toEqual(await values(chain(x)));
  });
});
