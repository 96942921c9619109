// Every `kind: "op"` golden case (elementwise, reductions, matmul, shape, indexing,
// losses, nn, norm, layers): forward values, then the gradients of every input that requires grad,
// against PyTorch's numbers. One parameterised suite per device.
import { describe, it } from 'vitest';
import { describeEachDevice } from './devices.ts';
import { evalExpr, expectTensor, loadGolden, toTensor, type OpCase } from './golden.ts';

const FILES = ['elementwise', 'reductions', 'matmul', 'shape', 'indexing', 'losses', 'nn', 'norm', 'layers'];

describeEachDevice('golden ops', (device) => {
  for (const file of FILES) {
    const golden = loadGolden(file);
    const cases = golden.cases.filter((c): c is OpCase => c.kind === 'op');
    describe(file, () => {
      for (const c of cases) {
        it(c.name, async () => {
          const label = `${file}: ${c.name} [${device}] (${c.expr})`;
          const names = Object.keys(c.inputs);
          const xs = names.map((n) => toTensor(c.inputs[n], device));
          const out = evalExpr(c.expr, names, xs, device);
          await expectTensor(out, c.output, c.tol, `${label}: output`);

          const gradNames = Object.keys(c.grads);
          if (gradNames.length === 0) return;
          if (!out.requiresGrad) throw new Error(`${label}: output should require grad (inputs ${gradNames.join(', ')} do)`);
          out.backward(c.gradOutput ? toTensor(c.gradOutput, device) : undefined);
          for (const n of gradNames) {
            const expected = c.grads[n];
            const x = xs[names.indexOf(n)];
            if (expected === null) {
              if (x.grad !== null) throw new Error(`${label}: ${n}.grad should be null (unused input)`);
              continue;
            }
            await expectTensor(x.grad, expected, c.tol, `${label}: ${n}.grad`);
          }
          // inputs that do not require grad (int32 indices/targets, constants) get no .grad
          for (const [i, n] of names.entries()) {
            if (!c.inputs[n].requiresGrad && xs[i].grad !== null) {
              throw new Error(`${label}: ${n} does not require grad, but ${n}.grad is not null`);
            }
          }
        });
      }
    });
  }
});
