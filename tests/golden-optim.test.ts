// Every optim.json and optim-extra.json case: 5 steps of SGD / Adam / AdamW / RMSprop / Adagrad /
// Adadelta on a quadratic or a linear loss, comparing the loss before each step and the parameters
// after it with PyTorch's; plus `opt.lr` reading and setting the learning rate.
import { describe, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice, } from './devices.ts';
import { expectTensor, expectValues, loadGolden, toTensor, values, type Device, type GTensor, type OptimCase } from './golden.ts';

const { nn, optim } = kiln;
const cases = loadGolden('optim').cases.filter((c): c is OptimCase => c.kind === 'optim');
/** RMSprop, Adagrad and Adadelta (optim-extra.json; quadratic loss only). */
const extraCases = loadGolden('optim-extra').cases.filter((c): c is OptimCase => c.kind === 'optim');

function makeParams(c: OptimCase, device: Device): kiln.Tensor[] {
  return c.params.map((p) => new nn.Parameter(toTensor(p, device, false)) as unknown as kiln.Tensor);
}

function makeOptimizer(expr: string, params: kiln.Tensor[]): any {
  // eslint-disable-next-line no-new-func
  return new Function('optim', 'params', `return ${expr};`)(optim, params);
}

/** The loss of step t, built with kiln ops in the same order as gen.py. */
function lossAt(c: OptimCase, params: kiln.Tensor[], consts: { a?: kiln.Tensor[]; c?: kiln.Tensor[]; g?: kiln.Tensor[][] }, t: number): kiln.Tensor {
  if (c.loss === 'quadratic') {
    // sum(((p - c)**2 * a).sum() for each p) * 0.5
    const terms = params.map((p, i) => p.sub(consts.c![i]).pow(2).mul(consts.a![i]).sum());
    return terms.reduce((s, x) => s.add(x)).mul(0.5);
  }
  // sum((p * g_t).sum() for each p)
  const terms = params.map((p, i) => p.mul(consts.g![t][i]).sum());
  return terms.reduce((s, x) => s.add(x));
}

function makeConsts(c: OptimCase, device: Device) {
  const T = (g: GTensor) => toTensor(g, device, false);
  return {
    a: c.a?.map(T),
    c: c.c?.map(T),
    g: c.gradSeq?.map((gs) => gs.map(T)),
  };
}

describeEachDevice('golden optim', (device) => {
  it('optim.json has 20 cases', () => {
    if (cases.length !== 20) throw new Error(`expected 20 optim cases, found ${cases.length}`);
  });

  it('optim-extra.json has 6 cases', () => {
    if (extraCases.length !== 6) throw new Error(`expected 6 optim-extra cases, found ${extraCases.length}`);
  });

  for (const c of [...cases, ...extraCases]) {
    it(c.name, async () => {
      const label = `${c.name} [${device}] (${c.expr})`;
      const params = makeParams(c, device);
      const consts = makeConsts(c, device);
      const opt = makeOptimizer(c.expr, params);
      for (let t = 0; t < c.steps.length; t++) {
        opt.zeroGrad();
        params.forEach((p, i) => {
          if (p.grad !== null) throw new Error(`${label}: step ${t}: params[${i}].grad should be null after zeroGrad()`);
        });
        const loss = lossAt(c, params, consts, t);
        const lossValue = await loss.item();
        expectValues([lossValue], [c.steps[t].loss], c.tol, `${label}: step ${t}: loss before the step`);
        loss.backward();
        opt.step();
        for (let i = 0; i < params.length; i++) {
          await expectTensor(params[i], c.steps[t].params[i], c.tol, `${label}: step ${t}: params[${i}] after the step`);
        }
      }
    });
  }

  describe('opt.lr', () => {
    // Linear loss, no weight decay: each step's update is proportional to lr, so
    // with lr halved for step 2 the parameters move half the golden step-2 distance.
    const picks = [
      cases.find((c) => c.name === 'SGD/lr 0.1/linear'),
      cases.find((c) => c.name === 'SGD/momentum 0.9/linear'),
      cases.find((c) => c.name === 'Adam/lr 0.01 defaults/linear'),
    ];
    for (const c of picks) {
      if (!c) continue;
      it(`${c.name}: opt.lr reads the lr and setting it changes the next step`, async () => {
        const label = `${c.name} [${device}] lr get/set`;
        const lr0 = c.options.lr as number;
        const params = makeParams(c, device);
        const consts = makeConsts(c, device);
        const opt = makeOptimizer(c.expr, params);
        if (opt.lr !== lr0) throw new Error(`${label}: opt.lr is ${opt.lr}, expected ${lr0}`);

        // step 0 with the original lr
        opt.zeroGrad();
        lossAt(c, params, consts, 0).backward();
        opt.step();
        for (let i = 0; i < params.length; i++) {
          await expectTensor(params[i], c.steps[0].params[i], c.tol, `${label}: step 0: params[${i}]`);
        }
        // step 1 with half the lr
        opt.lr = lr0 / 2;
        if (opt.lr !== lr0 / 2) throw new Error(`${label}: after opt.lr = ${lr0 / 2}, opt.lr reads ${opt.lr}`);
        opt.zeroGrad();
        lossAt(c, params, consts, 1).backward();
        opt.step();
        for (let i = 0; i < params.length; i++) {
          const p0 = c.steps[0].params[i].data;
          const p1 = c.steps[1].params[i].data;
          const expected = p0.map((v, k) => v + (p1[k] - v) / 2);
          expectValues(await values(params[i]), expected, { rtol: 1e-5, atol: 1e-6 }, `${label}: step 1 with lr ${lr0 / 2}: params[${i}]`);
        }
      });
    }
  });
});
