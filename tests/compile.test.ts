// kiln.compile's contract (API.md "compile"), beyond numerical equality with golden data:
// TraceError for data-dependent control flow (naming this file and the offending line), failed
// traces leaving state untouched, autograd.grad / createGraph / retainGraph inside compile,
// return shapes, zero-argument steps, captured tensors read by reference, train/eval with
// Dropout, and gradients accumulating across compiled calls.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values } from './golden.ts';
import { markedLine } from './helpers/source-lines.ts';

const { nn, F, optim } = kiln;
type Tensor = kiln.Tensor;

const THIS_FILE = 'compile.test.ts';

const lineOf = (marker: string): number => markedLine(import.meta.url, marker);

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the compiled call to reject, but it resolved');
}

function expectTraceError(e: Error, method: string, marker: string): void {
  expect(e.name).toBe('TraceError');
  expect(e).toBeInstanceOf(kiln.TraceError);
  expect(e.message).toContain(method);
  expect(e.message).toContain(THIS_FILE);
  expect(e.message).toContain(`${THIS_FILE}:${lineOf(marker)}`);
}

class MLP extends nn.Module {
  fc1: kiln.nn.Linear;
  fc2: kiln.nn.Linear;
  constructor(device: 'cpu' | 'webgpu') {
    super();
    this.fc1 = new nn.Linear(4, 5, { device });
    this.fc2 = new nn.Linear(5, 2, { device });
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(F.relu(this.fc1.forward(x)));
  }
}

describeEachDevice('compile', (device) => {
  describe('TraceError', () => {
    it('itemSync() on a traced tensor to branch: TraceError naming this file, the line and itemSync', async () => {
      const x = kiln.tensor([1, -2, 3], { device });
      const step = kiln.compile((t: Tensor) => {
        if (t.sum().itemSync() > 0) return t.mul(2); // MARK:itemSync
        return t;
      });
      expectTraceError(await rejection(step(x)), 'itemSync', 'MARK:itemSync');
      expect(step.traces).toBe(0);
    });

    it('dataSync() and arraySync() inside a traced function', async () => {
      const x = kiln.tensor([1, 2], { device });
      const s1 = kiln.compile((t: Tensor) => t.mul(t.dataSync()[0])); // MARK:dataSync
      expectTraceError(await rejection(s1(x)), 'dataSync', 'MARK:dataSync');
      const s2 = kiln.compile((t: Tensor) => t.mul((t.arraySync() as number[])[0])); // MARK:arraySync
      expectTraceError(await rejection(s2(x)), 'arraySync', 'MARK:arraySync');
    });

    it('`await t.data()` inside a traced (async) function rejects with a TraceError naming data() and the line', async () => {
      const x = kiln.tensor([1, 2], { device });
      const step = kiln.compile((async (t: Tensor) => {
        const d = await t.data(); // MARK:awaitData
        return t.mul(d[0]);
      }) as unknown as (t: Tensor) => Tensor);
      const e = await rejection(step(x));
      expectTraceError(e, 'data()', 'MARK:awaitData');
    });

    it('`await t.item()` inside a traced (async) function rejects with a TraceError naming item() and the line', async () => {
      const x = kiln.tensor([1, 2], { device });
      const step = kiln.compile((async (t: Tensor) => {
        if ((await t.sum().item()) > 0) return t.neg(); // MARK:asyncItem
        return t;
      }) as unknown as (t: Tensor) => Tensor);
      const e = await rejection(step(x));
      expectTraceError(e, 'item()', 'MARK:asyncItem');
    });

    it('an async function (returning a Promise) is a TraceError that says compile() needs a synchronous function', async () => {
      const step = kiln.compile((async (t: Tensor) => t.add(1)) as unknown as (t: Tensor) => Tensor);
      const e = await rejection(step(kiln.tensor([1], { device })));
      expect(e.name).toBe('TraceError');
      expect(e.message).toMatch(/synchronous/);
    });

    it('a step that throws during tracing leaves parameters, grads and optimizer state unchanged', async () => {
      for (const kind of ['SGD', 'Adam'] as const) {
        kiln.manualSeed(2);
        const model = new MLP(device);
        const opt = kind === 'SGD' ? new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 }) : new optim.Adam(model.parameters(), { lr: 0.1 });
        const x = kiln.randn([3, 4], { device }), y = kiln.randn([3, 2], { device });
        // one eager step so that the state (momentum / moments / step count) is non-trivial
        F.mseLoss(model.forward(x), y).backward();
        opt.step();
        const state = (): Tensor[] => {
          const o = opt as unknown as { momentumBuffers?: (Tensor | null)[]; stepCount: Tensor } & Record<string, unknown>;
          const ts: Tensor[] = [o.stepCount];
          for (const v of Object.values(o)) {
            if (Array.isArray(v)) for (const t of v) if (t instanceof kiln.Tensor) ts.push(t);
          }
          return ts;
        };
        const snapshot = async () => ({
          params: await Promise.all(model.parameters().map(values)),
          grads: await Promise.all(model.parameters().map((p) => values(p.grad))),
          state: await Promise.all(state().map(values)),
        });
        const before = await snapshot();
        expect(before.state.length).toBeGreaterThan(model.parameters().length); // found the buffers
        const step = kiln.compile((xb: Tensor, yb: Tensor) => {
          const loss = F.mseLoss(model.forward(xb), yb);
          loss.backward();
          opt.step();
          if (loss.itemSync() > 1e9) opt.zeroGrad(); // MARK:afterStep
          return loss;
        });
        expectTraceError(await rejection(step(x, y)), 'itemSync', 'MARK:afterStep');
        const after = await snapshot();
        expect(after).toEqual(before);
        // also an ordinary exception (a shape error) after the update was traced
        const step2 = kiln.compile((xb: Tensor, yb: Tensor) => {
          F.mseLoss(model.forward(xb), yb).backward();
          opt.step();
          return xb.add(kiln.ones([7], { device }));
        });
        const e2 = await rejection(step2(x, y));
        expect(e2.message).toMatch(/shape|broadcast/i);
        expect(await snapshot()).toEqual(before);
        // and the optimizer still works eagerly afterwards
        expect(await opt.stepCount.item()).toBe(1);
      }
    });
  });

  describe('autograd inside compile', () => {
    it('autograd.grad with createGraph: second derivatives of z = x*x*y match eager', async () => {
      const run = (x: Tensor, y: Tensor): Tensor[] => {
        const z = x.mul(x).mul(y);
        const [gx] = kiln.autograd.grad([z], [x], { createGraph: true });
        const [gxx, gxy] = kiln.autograd.grad([gx!.sum()], [x, y]);
        return [z, gx!, gxx!, gxy!];
      };
      const mk = () => [kiln.tensor(3, { device, requiresGrad: true }), kiln.tensor(2, { device, requiresGrad: true })];
      const [xe, ye] = mk();
      const eager = await Promise.all(run(xe, ye).map(values));
      const [xc, yc] = mk();
      const step = kiln.compile(run);
      const comp = await Promise.all(((await step(xc, yc)) as Tensor[]).map(values));
      expect(comp).toEqual(eager);
      expect(comp).toEqual([[18], [12], [4], [6]]);
      // autograd.grad leaves .grad alone
      expect(xc.grad).toBeNull();
      expect(yc.grad).toBeNull();
    });

    it('the example: z.backward({createGraph}) gives x.grad 12, then zeroed x.grad.backward() gives 6 (compiled == eager)', async () => {
      const run = (x: Tensor, y: Tensor): Tensor[] => {
        const z = x.mul(x).mul(y);
        z.backward({ createGraph: true });
        const first = x.grad!.detach().clone();
        const gx = x.grad!;
        kiln.noGrad(() => gx.zero_());
        gx.backward();
        return [first, x.grad!];
      };
      const mk = () => [kiln.tensor(2, { device, requiresGrad: true }), kiln.tensor(3, { device, requiresGrad: true })];
      const [xe, ye] = mk();
      const eager = await Promise.all(run(xe, ye).map(values));
      expect(eager).toEqual([[12], [6]]);
      const [xc, yc] = mk();
      const comp = await Promise.all(((await kiln.compile(run)(xc, yc)) as Tensor[]).map(values));
      expect(comp).toEqual(eager);
      expect(await values(xc.grad)).toEqual(await values(xe.grad));
      expect(await values(yc.grad)).toEqual(await values(ye.grad));
    });

    it('backward twice through the same graph without retainGraph throws mentioning retainGraph; with it, grads double', async () => {
      const a = kiln.tensor([1, 2], { device, requiresGrad: true });
      const bad = kiln.compile((t: Tensor) => {
        const l = t.mul(t).sum();
        l.backward();
        l.backward();
        return l;
      });
      const e = await rejection(bad(a));
      expect(e.message).toContain('retainGraph');
      expect(a.grad).toBeNull();
      const good = kiln.compile((t: Tensor) => {
        const l = t.mul(t).sum();
        l.backward(undefined, { retainGraph: true });
        l.backward();
        return l;
      });
      await good(a);
      expect(await values(a.grad)).toEqual([4, 8]);
    });
  });

  describe('arguments and return values', () => {
    it('returns a tensor, an array, a nested object, or nothing', async () => {
      const x = kiln.tensor([1, 2, 3], { device });
      const one = await kiln.compile((t: Tensor) => t.add(1))(x);
      expect(one).toBeInstanceOf(kiln.Tensor);
      expect(await values(one)).toEqual([2, 3, 4]);

      const arr = (await kiln.compile((t: Tensor) => [t.mul(2), t.sum(), t])(x)) as Tensor[];
      expect(arr).toHaveLength(3);
      expect(await values(arr[0])).toEqual([2, 4, 6]);
      expect(arr[1].shape).toEqual([]);
      expect(await values(arr[1])).toEqual([6]);
      expect(await values(arr[2])).toEqual([1, 2, 3]);

      const obj = (await kiln.compile((t: Tensor) => ({ a: t.neg(), nested: { b: [t.max()] } }))(x)) as { a: Tensor; nested: { b: Tensor[] } };
      expect(await values(obj.a)).toEqual([-1, -2, -3]);
      expect(await values(obj.nested.b[0])).toEqual([3]);

      const counter = kiln.zeros([2], { device });
      const nothing = kiln.compile((t: Tensor) => {
        kiln.noGrad(() => counter.add_(t.sum()));
      });
      expect(await nothing(kiln.tensor([1, 2], { device }))).toBeUndefined();
      expect(await nothing(kiln.tensor([1, 2], { device }))).toBeUndefined();
      expect(await values(counter)).toEqual([6, 6]);
    });

    it('a returned tensor is not overwritten by the next call (fresh storage per call)', async () => {
      const step = kiln.compile((t: Tensor) => t.mul(3));
      const r1 = await step(kiln.tensor([1, 2], { device }));
      const r2 = await step(kiln.tensor([5, 6], { device }));
      expect(await values(r1)).toEqual([3, 6]);
      expect(await values(r2)).toEqual([15, 18]);
    });

    it('returning a captured tensor after an in-place update gives its new value; a returned argument is its value', async () => {
      const p = kiln.tensor([1, 2], { device });
      const step = kiln.compile((t: Tensor) => {
        const old = p;
        kiln.noGrad(() => p.add_(t));
        return [old, t];
      });
      const x = kiln.tensor([10, 20], { device });
      const [r0, r1] = (await step(x)) as Tensor[];
      expect(await values(p)).toEqual([11, 22]);
      // `old` is the same JS object as p, so PyTorch semantics say it shows the updated value
      expect(await values(r0)).toEqual([11, 22]);
      expect(await values(r1)).toEqual([10, 20]);
    });

    it('zero-argument functions: a training step over captured data', async () => {
      kiln.manualSeed(4);
      const model = new MLP(device);
      const ref = new MLP(device);
      ref.loadStateDict(model.stateDict());
      const X = kiln.randn([6, 4], { device }), Y = kiln.randn([6, 2], { device });
      const opt = new optim.SGD(model.parameters(), { lr: 0.05 });
      const optRef = new optim.SGD(ref.parameters(), { lr: 0.05 });
      const step = kiln.compile(() => {
        const loss = F.mseLoss(model.forward(X), Y);
        loss.backward();
        opt.step();
        opt.zeroGrad();
        return loss;
      }, { device });
      for (let i = 0; i < 5; i++) {
        const le = F.mseLoss(ref.forward(X), Y);
        le.backward();
        optRef.step();
        optRef.zeroGrad();
        const lc = await step();
        expect(lc.device).toBe(device);
        expectValues([await lc.item()], [await le.item()], { rtol: 1e-5, atol: 1e-6 }, `zero-arg step ${i}`);
      }
      expect(step.traces).toBe(1);
      for (const [i, p] of model.parameters().entries()) {
        expectValues(await values(p), await values(ref.parameters()[i]), { rtol: 1e-5, atol: 1e-6 }, `zero-arg param ${i}`);
      }
    });

    it('a zero-argument function returning a constant', async () => {
      const step = kiln.compile(() => kiln.ones([2, 2], { device }).mul(5), { device });
      const r = await step();
      expect(r.shape).toEqual([2, 2]);
      expect(await values(r)).toEqual([5, 5, 5, 5]);
    });

    it('a non-tensor argument is a TypeError; returning a number is a TraceError', async () => {
      const step = kiln.compile((t: Tensor) => t);
      await expect(step(3 as unknown as Tensor)).rejects.toThrow(TypeError);
      const bad = kiln.compile((t: Tensor) => 3 as unknown as Tensor);
      const e = await rejection(bad(kiln.tensor([1], { device })));
      expect(e.name).toBe('TraceError');
    });
  });

  describe('captured tensors are read by reference', () => {
    it('a parameter changed eagerly between calls (fill_ under noGrad, loadStateDict) is seen by the next call', async () => {
      const lin = new nn.Linear(3, 2, { device });
      const step = kiln.compile((x: Tensor) => lin.forward(x));
      const x = kiln.tensor([[1, 2, 3]], { device });
      const eager = async () => values(kiln.noGrad(() => lin.forward(x)));
      expectValues(await values(await step(x)), await eager(), { rtol: 1e-6, atol: 1e-6 }, 'initial');
      kiln.noGrad(() => {
        lin.weight.fill_(0.5);
        lin.bias!.fill_(-1);
      });
      expect(await values(await step(x))).toEqual([2, 2]);
      const other = new nn.Linear(3, 2, { device });
      lin.loadStateDict(other.stateDict());
      expectValues(await values(await step(x)), await eager(), { rtol: 1e-6, atol: 1e-6 }, 'after loadStateDict');
      expect(step.traces).toBe(1);
    });

    it('a module parameter replaced by a new Parameter object between calls is used by the next call (retraces or is correct)', async () => {
      const lin = new nn.Linear(2, 1, { device });
      const step = kiln.compile((x: Tensor) => lin.forward(x));
      const x = kiln.ones([1, 2], { device });
      await step(x);
      lin.weight = new nn.Parameter(kiln.tensor([[10, 20]], { device }));
      const eager = await values(kiln.noGrad(() => lin.forward(x)));
      expectValues(await values(await step(x)), eager, { rtol: 1e-6, atol: 1e-6 }, 'after replacing lin.weight');
    });

    it('a captured plain tensor updated by copy_ between calls', async () => {
      const scale = kiln.tensor([2], { device });
      const step = kiln.compile((x: Tensor) => x.mul(scale));
      const x = kiln.tensor([1, 2], { device });
      expect(await values(await step(x))).toEqual([2, 4]);
      scale.copy_(kiln.tensor([-3]));
      expect(await values(await step(x))).toEqual([-3, -6]);
    });
  });

  describe('in-place writes', () => {
    it('an in-place write into a view of a captured tensor is carried out on the real tensor (or is a TraceError), never dropped', async () => {
      const run = (p: Tensor, x: Tensor): Tensor => {
        kiln.noGrad(() => p.index(0).fill_(1));
        return x.add(p);
      };
      const pe = kiln.zeros([2, 3], { device }), pc = kiln.zeros([2, 3], { device });
      const x = kiln.ones([2, 3], { device });
      const eager = await values(run(pe, x));
      expect(eager).toEqual([2, 2, 2, 1, 1, 1]);
      const step = kiln.compile((t: Tensor) => run(pc, t));
      let got: number[] | null = null;
      try {
        got = await values(await step(x));
      } catch (e) {
        // refusing is acceptable, silently dropping the write is not
        expect((e as Error).name).toBe('TraceError');
        expect(await values(pc)).toEqual([0, 0, 0, 0, 0, 0]);
        return;
      }
      expect(got).toEqual(eager);
      expect(await values(pc)).toEqual(await values(pe));
    });

    it('in-place updates of a whole captured tensor (add_, mul_, copy_) under noGrad match eager over several calls', async () => {
      const run = (p: Tensor, q: Tensor, x: Tensor): Tensor => {
        kiln.noGrad(() => {
          p.mul_(0.5).add_(x);
          q.copy_(p.mul(2));
        });
        return p.sum();
      };
      const [pe, qe, pc, qc] = [0, 1, 2, 3].map(() => kiln.tensor([1, 2, 3], { device }));
      const step = kiln.compile((x: Tensor) => run(pc, qc, x));
      for (let i = 0; i < 3; i++) {
        const x = kiln.tensor([i, -i, 1], { device });
        const le = await values(run(pe, qe, x));
        expect(await values(await step(x))).toEqual(le);
        expect(await values(pc)).toEqual(await values(pe));
        expect(await values(qc)).toEqual(await values(qe));
      }
      expect(step.traces).toBe(1);
    });
  });

  describe('signatures and retracing', () => {
    it('traces starts at 0; same shapes reuse the trace; dtype, shape, grad mode and requiresGrad of arguments retrace', async () => {
      const lin = new nn.Linear(3, 2, { device });
      const step = kiln.compile((x: Tensor) => lin.forward(x).relu());
      expect(step.traces).toBe(0);
      await step(kiln.randn([4, 3], { device }));
      await step(kiln.randn([4, 3], { device }));
      expect(step.traces).toBe(1);
      await step(kiln.randn([5, 3], { device }));
      expect(step.traces).toBe(2);
      await kiln.noGrad(() => step(kiln.randn([4, 3], { device })));
      expect(step.traces).toBe(3);
      await step(kiln.randn([4, 3], { device, requiresGrad: true }));
      expect(step.traces).toBe(4);
      // and all cached versions stay in use
      await step(kiln.randn([4, 3], { device }));
      await step(kiln.randn([5, 3], { device }));
      expect(step.traces).toBe(4);

      const add = kiln.compile((x: Tensor) => x.add(1));
      expect(await values(await add(kiln.tensor([1.5, 2], { device })))).toEqual([2.5, 3]);
      const r = await add(kiln.tensor(Int32Array.from([1, 2]), { shape: [2], dtype: 'int32', device }));
      expect(add.traces).toBe(2);
      expect(r.dtype).toBe('int32');
      expect(await values(r)).toEqual([2, 3]);
    });

    it('a step compiled under noGrad writes no grads; the same step with grad enabled does', async () => {
      const lin = new nn.Linear(3, 1, { device });
      const step = kiln.compile((x: Tensor) => {
        const out = lin.forward(x).sum();
        if (kiln.isGradEnabled()) out.backward();
        return out;
      });
      const x = kiln.randn([2, 3], { device });
      await kiln.noGrad(() => step(x));
      expect(lin.weight.grad).toBeNull();
      await step(x);
      expect(lin.weight.grad).not.toBeNull();
      expect(await values(lin.weight.grad)).toEqual(await values(x.sum(0)));
    });

    it('non-contiguous arguments (a transposed view, a slice) give the same result as eager', async () => {
      const base = kiln.arange(0, 12, 1, { device }).float().reshape([3, 4]);
      const step = kiln.compile((x: Tensor) => x.mul(2).add(x.sum(0)));
      for (const v of [base.T, base.index(null, [1, 3]), base.index([null, null, 2])]) {
        expect(await values(await step(v))).toEqual(await values(v.mul(2).add(v.sum(0))));
      }
    });

    it('options.device runs the step there; arguments from another device are moved', async () => {
      const step = kiln.compile((x: Tensor, y: Tensor) => x.matmul(y).relu(), { device });
      const x = kiln.tensor([[1, -2], [3, 4]]), y = kiln.tensor([[1, 0], [0, -1]]); // cpu
      const r = await step(x, y);
      expect(r.device).toBe(device);
      expect(await values(r)).toEqual([1, 2, 3, 0]);
    });

    it('two compiled functions sharing parameters (train step + noGrad eval) interleave correctly', async () => {
      kiln.manualSeed(12);
      const model = new MLP(device), ref = new MLP(device);
      ref.loadStateDict(model.stateDict());
      const opt = new optim.Adam(model.parameters(), { lr: 0.05 }), optRef = new optim.Adam(ref.parameters(), { lr: 0.05 });
      const X = kiln.randn([8, 4], { device });
      const Y = kiln.tensor(Int32Array.from([0, 1, 1, 0, 1, 0, 0, 1]), { shape: [8], dtype: 'int32', device });
      const trainBody = (m: MLP, o: kiln.optim.Optimizer, x: Tensor, y: Tensor) => {
        const loss = F.crossEntropy(m.forward(x), y);
        loss.backward();
        o.step();
        o.zeroGrad();
        return loss;
      };
      const evalBody = (m: MLP, x: Tensor, y: Tensor) => {
        const logits = m.forward(x);
        return { correct: logits.argmax(1).eq(y).int().sum(), logits };
      };
      const train = kiln.compile((x: Tensor, y: Tensor) => trainBody(model, opt, x, y));
      const evaluate = kiln.compile((x: Tensor, y: Tensor) => evalBody(model, x, y));
      for (let i = 0; i < 6; i++) {
        const le = await trainBody(ref, optRef, X, Y).item();
        expectValues([await (await train(X, Y)).item()], [le], { rtol: 1e-4, atol: 1e-5 }, `train ${i}`);
        const re = kiln.noGrad(() => evalBody(ref, X, Y));
        const rc = await kiln.noGrad(() => evaluate(X, Y));
        expect(rc.correct.dtype).toBe('int32');
        expect(await values(rc.correct)).toEqual(await values(re.correct));
        expectValues(await values(rc.logits), await values(re.logits), { rtol: 1e-4, atol: 1e-5 }, `eval logits ${i}`);
      }
      expect(train.traces).toBe(1);
      expect(evaluate.traces).toBe(1);
    });
  });

  describe('train() / eval() with Dropout', () => {
    it('eval() after a compiled call in training mode gives the identity (retraces or is correct)', async () => {
      kiln.manualSeed(6);
      const drop = new nn.Dropout(0.5);
      const model = new nn.Sequential(drop);
      const step = kiln.compile((x: Tensor) => model.forward(x));
      const x = kiln.ones([64], { device });
      const train = await values(await step(x));
      expect(train.every((v) => v === 0 || v === 2)).toBe(true);
      expect(train.some((v) => v === 0)).toBe(true);
      model.eval();
      expect(drop.training).toBe(false);
      expect(await values(await step(x))).toEqual(new Array(64).fill(1));
      model.train();
      const again = await values(await step(x));
      expect(again.every((v) => v === 0 || v === 2)).toBe(true);
    });

    it('a compiled Dropout draws a fresh mask on every call (not one mask baked in at trace time)', async () => {
      kiln.manualSeed(7);
      const drop = new nn.Dropout(0.5);
      const step = kiln.compile((x: Tensor) => drop.forward(x));
      const x = kiln.ones([64], { device });
      const m1 = await values(await step(x));
      const m2 = await values(await step(x));
      const m3 = await values(await step(x));
      expect(m1.every((v) => v === 0 || v === 2)).toBe(true);
      expect(m1.join() === m2.join() && m2.join() === m3.join()).toBe(false);
    });
  });

  describe('gradient accumulation', () => {
    it('grads accumulate across compiled calls when the step does not zeroGrad (== eager over 3 calls)', async () => {
      kiln.manualSeed(8);
      const model = new MLP(device);
      const ref = new MLP(device);
      ref.loadStateDict(model.stateDict());
      const xs = [0, 1, 2].map(() => kiln.randn([3, 4], { device }));
      const ys = [0, 1, 2].map(() => kiln.randn([3, 2], { device }));
      const step = kiln.compile((x: Tensor, y: Tensor) => {
        const loss = F.mseLoss(model.forward(x), y);
        loss.backward();
        return loss;
      });
      for (let i = 0; i < 3; i++) {
        F.mseLoss(ref.forward(xs[i]), ys[i]).backward();
        await step(xs[i], ys[i]);
        for (const [j, p] of model.parameters().entries()) {
          expectValues(await values(p.grad), await values(ref.parameters()[j].grad), { rtol: 1e-5, atol: 1e-6 }, `call ${i}: grad of param ${j}`);
        }
      }
      // the parameters themselves did not move
      for (const [j, p] of model.parameters().entries()) expect(await values(p)).toEqual(await values(ref.parameters()[j]));
      expect(step.traces).toBeLessThanOrEqual(2);
    });

    it('grads of arguments accumulate too when the same argument tensor is passed again', async () => {
      const x = kiln.tensor([1, 2, 3], { device, requiresGrad: true });
      const step = kiln.compile((t: Tensor) => {
        const l = t.mul(t).sum();
        l.backward();
        return l;
      });
      await step(x);
      expect(await values(x.grad)).toEqual([2, 4, 6]);
      await step(x);
      expect(await values(x.grad)).toEqual([4, 8, 12]);
    });
  });
});
