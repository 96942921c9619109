// The golden kinds beyond `op` and `optim` (../shared/golden/README.md), eagerly and through
// kiln.compile, on every test device:
//  - `module` (norm.json): BatchNorm1d/2d and LayerNorm trained for a few steps (outputs, input
//    gradients, accumulated parameter gradients, running-statistics buffers), then evaluated;
//  - `schedule` (schedules.json): the learning rates each lrScheduler sets over 11 steps, and a
//    compiled SGD step that follows them (the lr is read on every call, never baked in);
//  - `clip` (schedules.json): clipGradNorm_ / clipGradValue_ (returned total norm, clipped grads).
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { evalExpr, expectTensor, expectValues, loadGolden, toTensor, type ClipCase, type Device, type ModuleCase, type ScheduleCase } from './golden.ts';

type Tensor = kiln.Tensor;
const { nn, optim } = kiln;

const moduleCases = loadGolden('norm').cases.filter((c): c is ModuleCase => c.kind === 'module');
const schedules = loadGolden('schedules').cases;
const scheduleCases = schedules.filter((c): c is ScheduleCase => c.kind === 'schedule');
const clipCases = schedules.filter((c): c is ClipCase => c.kind === 'clip');

/** Checks a trained module's parameter grads and buffers against the case. */
async function expectModuleState(m: kiln.nn.Module, c: ModuleCase, label: string): Promise<void> {
  const params = new Map(m.namedParameters());
  expect([...params.keys()].sort()).toEqual(Object.keys(c.grads).sort());
  for (const [n, g] of Object.entries(c.grads)) await expectTensor(params.get(n)!.grad, g, c.tol, `${label}: ${n}.grad`);
  const buffers = new Map(m.namedBuffers());
  expect([...buffers.keys()].sort()).toEqual(Object.keys(c.buffers).sort());
  for (const [n, b] of Object.entries(c.buffers)) await expectTensor(buffers.get(n), b, c.tol, `${label}: buffer ${n}`);
  // stateDict holds the parameters and the buffers
  expect(Object.keys(m.stateDict()).sort()).toEqual([...params.keys(), ...buffers.keys()].sort());
}

function moduleSuite(device: Device, compiled: boolean): void {
  it('norm.json has 4 module cases', () => expect(moduleCases.length).toBe(4));
  for (const c of moduleCases) {
    it(c.name, async () => {
      const label = `${c.name} [${device}]${compiled ? ' compiled' : ''} (${c.ctor})`;
      const m = evalExpr(c.ctor, [], [], device) as kiln.nn.Module & { forward(x: Tensor): Tensor };
      m.train();
      const trainStep = (x: Tensor, go: Tensor): Tensor[] => {
        const out = m.forward(x);
        out.mul(go).sum().backward();
        return [out, x.grad!];
      };
      const step = kiln.compile(trainStep);
      for (let i = 0; i < c.trainInputs.length; i++) {
        const x = toTensor(c.trainInputs[i], device, true), go = toTensor(c.gradOutputs[i], device);
        const [out, gx] = compiled ? await step(x, go) : trainStep(x, go);
        await expectTensor(out, c.trainOutputs[i], c.tol, `${label}: training output ${i}`);
        await expectTensor(gx, c.inputGrads[i], c.tol, `${label}: input grad ${i}`);
      }
      await expectModuleState(m, c, label);
      m.eval();
      const evalStep = kiln.compile((x: Tensor) => m.forward(x));
      const xe = toTensor(c.evalInput, device);
      const out = await kiln.noGrad(() => (compiled ? evalStep(xe) : Promise.resolve(m.forward(xe))));
      await expectTensor(out, c.evalOutput, c.tol, `${label}: eval output`);
      // eval mode leaves the running statistics alone
      await expectModuleState(m, c, `${label} after eval`);
      if (compiled) expect(step.traces).toBeLessThanOrEqual(2); // grads null at first, then set
    });
  }
}

describeEachDevice('golden modules', (device) => moduleSuite(device, false));
describeEachDevice('golden modules, compiled', (device) => moduleSuite(device, true));

function makeSchedule(c: ScheduleCase, device: Device): { p: Tensor; opt: kiln.optim.Optimizer; sched: kiln.optim.lrScheduler.LRScheduler } {
  const p = new nn.Parameter(kiln.zeros([2], { device }));
  const opt = new optim.SGD([p], { lr: 0.1 });
  const sched = evalExpr(c.expr, ['opt'], [opt], device) as kiln.optim.lrScheduler.LRScheduler;
  return { p, opt, sched };
}

describe('golden schedules', () => {
  it('schedules.json has 7 schedule cases', () => expect(scheduleCases.length).toBe(7));
  for (const c of scheduleCases) {
    it(c.name, () => {
      const { p, opt, sched } = makeSchedule(c, 'cpu');
      const lrs = [opt.lr];
      for (let i = 1; i < c.lrs.length; i++) {
        opt.zeroGrad();
        p.sum().backward();
        opt.step();
        sched.step();
        lrs.push(opt.lr);
        expect(sched.getLastLr()).toEqual([opt.lr]);
      }
      expectValues(lrs, c.lrs, c.tol, `${c.name}: lrs`);
    });
  }
});

describeEachDevice('golden schedules, compiled step', (device) => {
  for (const c of scheduleCases) {
    it(`${c.name}: a compiled SGD step uses each new lr`, async () => {
      const { p, opt, sched } = makeSchedule(c, device);
      // the gradient is 1 everywhere, so each step moves p by -lr
      const step = kiln.compile(() => {
        opt.zeroGrad();
        p.sum().backward();
        opt.step();
      }, { device }); // no arguments: the device is named
      let expected = 0;
      for (let i = 1; i < c.lrs.length; i++) {
        await step();
        expected -= c.lrs[i - 1];
        sched.step();
        expectValues(Array.from(await p.data()), [expected, expected], { rtol: 1e-5, atol: 1e-6 }, `${c.name} [${device}]: p after step ${i}`);
      }
      // the first call sees p.grad null, later ones a set grad: one retrace, then reuse
      expect(step.traces).toBeLessThanOrEqual(2);
    });
  }
});

function clipSuite(device: Device, compiled: boolean): void {
  it('schedules.json has 4 clip cases', () => expect(clipCases.length).toBe(4));
  for (const c of clipCases) {
    it(c.name, async () => {
      const label = `${c.name} [${device}]${compiled ? ' compiled' : ''} (${c.expr})`;
      const params = c.grads.map((g) => {
        const p = new nn.Parameter(kiln.zeros(g.shape, { device }));
        p.grad = toTensor(g, device);
        return p;
      });
      const run = (): Tensor | undefined => evalExpr(c.expr, ['params'], [params], device);
      const ret = compiled ? await kiln.compile(run, { device })() : run();
      if (c.returned === null) expect(ret ?? null).toBeNull();
      else {
        expect(ret!.device).toBe(device);
        await expectTensor(ret, c.returned, c.tol, `${label}: returned total norm`);
      }
      for (let i = 0; i < params.length; i++) await expectTensor(params[i].grad, c.clippedGrads[i], c.tol, `${label}: params[${i}].grad`);
    });
  }
}

describeEachDevice('golden clip', (device) => clipSuite(device, false));
describeEachDevice('golden clip, compiled', (device) => clipSuite(device, true));
