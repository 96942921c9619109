// The golden PyTorch data again, this time through kiln.compile:
//  - every optim.json and optim-extra.json trajectory with the whole training step (zeroGrad, loss, backward, step)
//    compiled: the parameters after each of the 5 steps, and the returned loss before each;
//  - every `kind: "op"` case of elementwise/reductions/matmul/shape/indexing/losses/nn/norm/layers compiled as
//    `(...inputs, gradOutput) => { out = <expr>; out.backward(gradOutput); return [out, ...grads] }`:
//    the output, the gradients returned from inside the step and the `.grad` written back to the
//    real argument tensors after the call (fused, and again with fuse: false);
//  - the nn.json double-backward cases (createGraph, autograd.grad) inside compile.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { evalExpr, expectTensor, expectValues, loadGolden, toTensor, type Device, type DoubleBackwardCase, type GTensor, type OpCase, type OptimCase } from './golden.ts';

const { nn, optim } = kiln;
type Tensor = kiln.Tensor;

const optimCases = loadGolden('optim').cases.filter((c): c is OptimCase => c.kind === 'optim');
const extraOptimCases = loadGolden('optim-extra').cases.filter((c): c is OptimCase => c.kind === 'optim');
const OP_FILES = ['elementwise', 'reductions', 'matmul', 'shape', 'indexing', 'losses', 'nn', 'norm', 'layers'];

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

  for (const c of [...optimCases, ...extraOptimCases]) {
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

function opSuite(device: Device, fuse: boolean): void {
  for (const file of OP_FILES) {
    const cases = loadGolden(file).cases.filter((c): c is OpCase => c.kind === 'op');
    describe(file, () => {
      for (const c of cases) {
        it(c.name, async () => {
          const label = `${file}: ${c.name} [${device}] compiled${fuse ? '' : ' (fuse: false)'} (${c.expr})`;
          const names = Object.keys(c.inputs);
          const xs = names.map((n) => toTensor(c.inputs[n], device));
          const gradNames = Object.keys(c.grads);
          const withGrad = gradNames.length > 0;
          const gradOut = withGrad && c.gradOutput ? [toTensor(c.gradOutput, device)] : [];
          const step = kiln.compile((...args: Tensor[]) => {
            const ins = args.slice(0, names.length);
            const out = evalExpr(c.expr, names, ins, device) as Tensor;
            if (!withGrad) return [out];
            out.backward(gradOut.length ? args[names.length] : undefined);
            return [out, ...gradNames.map((n) => ins[names.indexOf(n)].grad)];
          }, { fuse });
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
}

describeEachDevice('compile golden ops', (device) => opSuite(device, true));
describeEachDevice('compile golden ops, fuse: false', (device) => opSuite(device, false));

const doubleCases = loadGolden('nn').cases.filter((c): c is DoubleBackwardCase => c.kind === 'doubleBackward');

describeEachDevice('compile golden double backward', (device) => {
  it('nn.json has double-backward cases', () => {
    expect(doubleCases.length).toBeGreaterThan(0);
  });
  for (const c of doubleCases) {
    it(`${c.name}: backward({ createGraph }) then backward of the gradient, compiled`, async () => {
      const label = `${c.name} [${device}] compiled`;
      const x = toTensor(c.inputs.x, device, true), y = toTensor(c.inputs.y, device, true);
      const vector = c.inputs.x.shape.length > 0;
      const step = kiln.compile((a: Tensor, b: Tensor) => {
        let z = a.mul(a).mul(b);
        if (vector) z = z.sum();
        z.backward(undefined, { createGraph: true });
        const first = [a.grad!.detach().clone(), b.grad!.detach().clone()];
        (vector ? a.grad!.sum() : a.grad!).backward();
        return { z, first };
      });
      const r = (await step(x, y)) as unknown as { z: Tensor; first: Tensor[] };
      await expectTensor(r.z, c.z, c.tol, `${label}: z`);
      await expectTensor(r.first[0], c.afterFirstBackward.x, c.tol, `${label}: x.grad after the first backward`);
      await expectTensor(r.first[1], c.afterFirstBackward.y, c.tol, `${label}: y.grad after the first backward`);
      await expectTensor(x.grad, c.afterSecondBackward.x, c.tol, `${label}: x.grad after the second backward`);
      await expectTensor(y.grad, c.afterSecondBackward.y, c.tol, `${label}: y.grad after the second backward`);
    });

    it(`${c.name}: autograd.grad with createGraph, compiled`, async () => {
      const label = `${c.name} [${device}] compiled autograd.grad`;
      const x = toTensor(c.inputs.x, device, true), y = toTensor(c.inputs.y, device, true);
      const vector = c.inputs.x.shape.length > 0;
      const step = kiln.compile((a: Tensor, b: Tensor) => {
        let z = a.mul(a).mul(b);
        if (vector) z = z.sum();
        const [gx] = kiln.autograd.grad([z], [a], { createGraph: true });
        const [gxx, gxy] = kiln.autograd.grad([gx!.sum()], [a, b]);
        return [gx!, gxx!, gxy!];
      });
      const [gx, gxx, gxy] = (await step(x, y)) as unknown as Tensor[];
      await expectTensor(gx, c.autogradGrad.gx, c.tol, `${label}: gx`);
      await expectTensor(gxx, c.autogradGrad.gxx, c.tol, `${label}: gxx`);
      await expectTensor(gxy, c.autogradGrad.gxy, c.tol, `${label}: gxy`);
      expect(x.grad).toBeNull();
      expect(y.grad).toBeNull();
    });
  }
});
