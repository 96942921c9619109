// The golden PyTorch data again, this time through kiln.compile:
//  - every optim.json trajectory with the whole training step (zeroGrad, loss, backward, step)
//    compiled: the parameters after each of the 5 steps, and the returned loss before each;
//  - every `kind: "op"` case of elementwise/reductions/matmul/shape/indexing/losses/nn compiled as
//    `(...inputs, gradOutput) => { out = <expr>; out.backward(gradOutput); return [out, ...grads] }`:
//    the output, the gradients returned from inside the step and the `.grad` written back to the
//    real argument tensors after the call.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { evalExpr, expectTensor, expectValues, loadGolden, toTensor, type Device, type GTensor, type OpCase, type OptimCase } from './golden.ts';

const { nn, optim } = kiln;
type Tensor = kiln.Tensor;

const optimCases = loadGolden('optim').cases.filter((c): c is OptimCase => c.kind === 'optim');
const OP_FILES = ['elementwise', 'reductions', 'matmul', 'shape', 'indexing', 'losses', 'nn'];

function makeParams(c: OptimCase, device: Device): Tensor[] {
  return c.params.map((p) => new nn.Parameter(toTensor(p, device, false)) as unknown as Tensor);
}

function makeOptimizer(expr: string, params: Tensor[]): any {
  // eslint-disable-next-line no-new-func
  return new Function('optim', 'params', `return ${expr};`)(optim, params);
}

describeEachDevice('compile golden optim', (device) => {
  it('optim.json has 20 cases', () => {
    expect(optimCases.length).toBe(20);
  });

  for (const c of optimCases) {
    it(c.name, async () => {
      const label = `${c.name} [${device}] compiled (${c.expr})`;
      const params = makeParams(c, device);
      const opt = makeOptimizer(c.expr, params);
      const T = (g: GTensor) => toTensor(g, device, false);
      let step: kiln.CompiledFunction<Tensor[], Tensor>;
      let argsAt: (t: number) => Tensor[];
      if (c.loss === 'quadratic') {
        // constants a, c are captured (read by reference), no arguments at all
        const a = c.a!.map(T), cc = c.c!.map(T);
        step = kiln.compile(() => {
          opt.zeroGrad();
          const terms = params.map((p, i) => p.sub(cc[i]).pow(2).mul(a[i]).sum());
          const loss = terms.reduce((s, x) => s.add(x)).mul(0.5);
          loss.backward();
          opt.step();
          return loss;
        }, { device });
        argsAt = () => [];
      } else {
        // the gradient sequence changes every step: pass it as arguments
        const gs = c.gradSeq!.map((g) => g.map(T));
        step = kiln.compile((...g: Tensor[]) => {
          opt.zeroGrad();
          const terms = params.map((p, i) => p.mul(g[i]).sum());
          const loss = terms.reduce((s, x) => s.add(x));
          loss.backward();
          opt.step();
          return loss;
        }, { device });
        argsAt = (t) => gs[t];
      }
      for (let t = 0; t < c.steps.length; t++) {
        const loss = await step(...argsAt(t));
        expect(loss.device).toBe(device);
        expectValues([await loss.item()], [c.steps[t].loss], c.tol, `${label}: step ${t}: returned loss`);
        for (let i = 0; i < params.length; i++) {
          await expectTensor(params[i], c.steps[t].params[i], c.tol, `${label}: step ${t}: params[${i}] after the step`);
        }
      }
      // step 1 sees grads that are set (step 0 saw null): at most one retrace, then reuse
      expect(step.traces).toBeGreaterThanOrEqual(1);
      expect(step.traces).toBeLessThanOrEqual(2);
    });
  }
});

describeEachDevice('compile golden ops', (device) => {
  for (const file of OP_FILES) {
    const cases = loadGolden(file).cases.filter((c): c is OpCase => c.kind === 'op');
    describe(file, () => {
      for (const c of cases) {
        it(c.name, async () => {
          const label = `${file}: ${c.name} [${device}] compiled (${c.expr})`;
          const names = Object.keys(c.inputs);
          const xs = names.map((n) => toTensor(c.inputs[n], device));
          const gradNames = Object.keys(c.grads);
          const withGrad = gradNames.length > 0;
          const gradOut = withGrad && c.gradOutput ? [toTensor(c.gradOutput, device)] : [];
          const step = kiln.compile((...args: Tensor[]) => {
            const ins = args.slice(0, names.length);
            const out = evalExpr(c.expr, names, ins) as Tensor;
            if (!withGrad) return [out];
            out.backward(gradOut.length ? args[names.length] : undefined);
            return [out, ...gradNames.map((n) => ins[names.indexOf(n)].grad)];
          });
          const res = (await step(...xs, ...gradOut)) as unknown as (Tensor | undefined)[];
          await expectTensor(res[0], c.output, c.tol, `${label}: output`);
          if (!withGrad) return;
          for (const [k, n] of gradNames.entries()) {
            const expected = c.grads[n];
            const x = xs[names.indexOf(n)];
            if (expected === null) {
              if (res[1 + k] != null) throw new Error(`${label}: ${n}.grad inside the step should be null (unused input)`);
              if (x.grad !== null) throw new Error(`${label}: ${n}.grad should be null (unused input)`);
              continue;
            }
            await expectTensor(res[1 + k], expected, c.tol, `${label}: ${n}.grad returned from the step`);
            await expectTensor(x.grad, expected, c.tol, `${label}: ${n}.grad written back to the argument`);
          }
          for (const [i, n] of names.entries()) {
            if (!c.inputs[n].requiresGrad && xs[i].grad !== null) {
              throw new Error(`${label}: ${n} does not require grad, but ${n}.grad is not null`);
            }
          }
          // a second call with fresh inputs of the same signature reuses the trace and gives the same values
          const ys = names.map((n) => toTensor(c.inputs[n], device));
          const res2 = (await step(...ys, ...gradOut)) as unknown as Tensor[];
          expect(step.traces).toBe(1);
          await expectTensor(res2[0], c.output, c.tol, `${label}: output (second call)`);
          for (const n of gradNames) {
            const expected = c.grads[n];
            if (expected) await expectTensor(ys[names.indexOf(n)].grad, expected, c.tol, `${label}: ${n}.grad (second call)`);
          }
        });
      }
    });
  }
});
