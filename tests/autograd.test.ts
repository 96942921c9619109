// Autograd facts from the seed tutorials (../shared/seeds/00[2-4]_*.txt) and API.md:
// the chain example, gradient accumulation with retainGraph, second derivatives,
// noGrad / enableGrad / detach, isLeaf and gradFn, and the errors backward must give.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values } from './golden.ts';

const { F } = kiln;
const EXACT = 'exact' as const;
const TOL = { rtol: 1e-5, atol: 1e-6 };

/** Run fn, expect it to throw an Error whose message matches every pattern; returns the message. */
function expectThrows(fn: () => unknown, patterns: RegExp[], what: string): string {
  let err: unknown = undefined;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (err === undefined) throw new Error(`${what}: expected an error, but nothing was thrown`);
  if (!(err instanceof Error)) throw new Error(`${what}: expected an Error, got ${String(err)}`);
  for (const p of patterns) {
    if (!p.test(err.message)) throw new Error(`${what}: error message ${JSON.stringify(err.message)} does not match ${p}`);
  }
  return err.message;
}

describeEachDevice('autograd', (device) => {
  const t = (data: any, opts: Record<string, unknown> = {}) => kiln.tensor(data, { device, ...opts });

  describe('seed 002: chain with ReLU', () => {
    it('x2 = x1 ** w1: dx2/dw1 = 2^3 ln 2', async () => {
      const x1 = t([2.0]);
      const w1 = t([3.0], { requiresGrad: true });
      const x2 = x1.pow(w1);
      x2.backward(); // one element: PyTorch allows backward() without a gradient
      expectValues(await values(x2), [8], TOL, 'x2');
      expectValues(await values(w1.grad!), [8 * Math.log(2)], TOL, 'w1.grad');
    });

    it('loss = (w3 * relu(w2 * (w1 * x1)) - target) ** 2 gives w1=9520, w2=7140, w3=5712', async () => {
      const x1 = t([2.0]);
      const w1 = t([3.0], { requiresGrad: true });
      const w2 = t([4.0], { requiresGrad: true });
      const w3 = t([5.0], { requiresGrad: true });
      const target = t([1.0]);

      const x2 = w1.mul(x1);
      const x3 = F.relu(w2.mul(x2));
      const x4 = w3.mul(x3);
      const loss = x4.sub(target).pow(2);
      loss.backward();
      expectValues(await values(loss), [14161], TOL, 'loss');
      expectValues(await values(w1.grad!), [9520], TOL, 'w1.grad');
      expectValues(await values(w2.grad!), [7140], TOL, 'w2.grad');
      expectValues(await values(w3.grad!), [5712], TOL, 'w3.grad');

      // the manual update of the tutorial, done under noGrad
      const lr = 0.01;
      kiln.noGrad(() => {
        for (const p of [w1, w2, w3]) p.sub_(p.grad!.mul(lr));
      });
      expectValues(await values(w1), [3 - 95.2], TOL, 'w1 after w1 -= 0.01 * grad');
      expectValues(await values(w2), [4 - 71.4], TOL, 'w2 after update');
      expectValues(await values(w3), [5 - 57.12], TOL, 'w3 after update');
      expect(w1.isLeaf, 'w1 stays a leaf after a noGrad update').toBe(true);
      expect(w1.requiresGrad, 'w1 still requires grad').toBe(true);
    });

    it('optim.SGD([w1, w2, w3], lr 0.01).step() does the same update', async () => {
      const x1 = t([2.0]);
      const ws = [3, 4, 5].map((v) => t([v], { requiresGrad: true }));
      const [w1, w2, w3] = ws;
      const opt = new kiln.optim.SGD(ws, { lr: 0.01 });
      const loss = w3.mul(F.relu(w2.mul(w1.mul(x1)))).sub(t([1.0])).pow(2);
      loss.backward();
      opt.step();
      expectValues(await values(w1), [-92.2], TOL, 'w1 after step');
      expectValues(await values(w2), [-67.4], TOL, 'w2 after step');
      expectValues(await values(w3), [-52.12], TOL, 'w3 after step');
      opt.zeroGrad();
      for (const [i, w] of ws.entries()) expect(w.grad, `w${i + 1}.grad after zeroGrad`).toBeNull();
    });
  });

  describe('seed 003: autograd with binary_cross_entropy_with_logits', () => {
    it('grads of w and b match the closed form (sigmoid(z) - y) / 3', async () => {
      kiln.manualSeed(0);
      const x = kiln.ones([5], { device });
      const y = kiln.zeros([3], { device });
      const w = kiln.randn([5, 3], { device, requiresGrad: true });
      const b = kiln.randn([3], { device, requiresGrad: true });
      const z = x.matmul(w).add(b);
      const loss = F.binaryCrossEntropyWithLogits(z, y);
      expect(z.gradFn, 'z.gradFn').toBe('AddBackward');
      expect(loss.gradFn, 'loss.gradFn is set').not.toBeNull();
      loss.backward();
      const zv = await values(z);
      const dz = zv.map((v) => 1 / (1 + Math.exp(-v)) / 3);
      expectValues(await values(b.grad!), dz, TOL, 'b.grad');
      expectValues(await values(w.grad!), [0, 1, 2, 3, 4].flatMap(() => dz), TOL, 'w.grad');
      // stopping gradient tracking
      let z2: kiln.Tensor | undefined;
      kiln.noGrad(() => {
        z2 = x.matmul(w).add(b);
      });
      expect(z2!.requiresGrad, 'z computed under noGrad').toBe(false);
      const zDet = x.matmul(w).add(b).detach();
      expect(zDet.requiresGrad, 'z.detach().requiresGrad').toBe(false);
    });

    it('inp = eye(5); out = (inp + 1).pow(2); backward(onesLike) with retainGraph: 4/2, then 8/4, zero_, then 4/2', async () => {
      const inp = kiln.eye(5, { device, requiresGrad: true });
      const out = inp.add(1).pow(2);
      const eye = (d: number, o: number) => Array.from({ length: 25 }, (_, i) => (i % 6 === 0 ? d : o));
      out.backward(kiln.onesLike(inp), { retainGraph: true });
      expectValues(await values(inp.grad!), eye(4, 2), EXACT, 'First call: inp.grad');
      out.backward(kiln.onesLike(inp), { retainGraph: true });
      expectValues(await values(inp.grad!), eye(8, 4), EXACT, 'Second call: inp.grad');
      inp.grad!.zero_();
      out.backward(kiln.onesLike(inp), { retainGraph: true });
      expectValues(await values(inp.grad!), eye(4, 2), EXACT, 'Call after zeroing gradients: inp.grad');
    });
  });

  describe('seed 004: requiresGrad, leaves, second derivatives', () => {
    it('z = w*x + b: x.grad = 3, w.grad = 1, b.grad = 1', async () => {
      const x = t(1.0, { requiresGrad: true });
      const b = t(2.0, { requiresGrad: true });
      const w = t(3.0, { requiresGrad: true });
      const z = w.mul(x).add(b);
      z.backward();
      expect(await x.grad!.item(), 'x.grad').toBe(3);
      expect(await w.grad!.item(), 'w.grad').toBe(1);
      expect(await b.grad!.item(), 'b.grad').toBe(1);
    });

    it('requiresGrad_() makes a leaf require grad', () => {
      const x = t(1.0).requiresGrad_();
      expect(x.requiresGrad, 'tensor(1.).requiresGrad_()').toBe(true);
      expect(x.isLeaf).toBe(true);
      expect(t(1.0).requiresGrad, 'default requiresGrad').toBe(false);
    });

    it('z = x*x*y (x=2, y=3): x.grad = 12 with createGraph; zero it; x.grad.backward() gives 6', async () => {
      const x = t(2.0).requiresGrad_();
      const y = t(3.0).requiresGrad_();
      const z = x.mul(x).mul(y);
      z.backward({ createGraph: true } as any);
      expect(await x.grad!.item(), 'x.grad after z.backward(createGraph)').toBe(12);
      expect(await y.grad!.item(), 'y.grad after z.backward(createGraph)').toBe(4);
      kiln.noGrad(() => x.grad!.zero_()); // the tutorial's x.grad.data.zero_()
      expect(await x.grad!.item(), 'x.grad after zeroing').toBe(0);
      x.grad!.backward(); // d(2xy)/dx = 2y
      expect(await x.grad!.item(), 'x.grad after x.grad.backward()').toBe(6);
      expect(await y.grad!.item(), 'y.grad after x.grad.backward() (4 + 2x)').toBe(8);
    });
  });

  describe('grad mode', () => {
    it('noGrad: results do not require grad; isGradEnabled; enableGrad inside noGrad', () => {
      const w = t([1, 2, 3], { requiresGrad: true });
      expect(kiln.isGradEnabled(), 'isGradEnabled() by default').toBe(true);
      let inside: boolean | undefined;
      let r: kiln.Tensor | undefined;
      let r2: kiln.Tensor | undefined;
      kiln.noGrad(() => {
        inside = kiln.isGradEnabled();
        r = w.mul(2);
        kiln.enableGrad(() => {
          r2 = w.mul(2);
        });
      });
      expect(inside, 'isGradEnabled() inside noGrad').toBe(false);
      expect(kiln.isGradEnabled(), 'isGradEnabled() after noGrad').toBe(true);
      expect(r!.requiresGrad, 'w.mul(2) under noGrad').toBe(false);
      expect(r!.gradFn, 'gradFn under noGrad').toBeNull();
      expect(r2!.requiresGrad, 'w.mul(2) under enableGrad inside noGrad').toBe(true);
    });

    it('noGrad restores grad mode when fn throws', () => {
      expect(() => kiln.noGrad(() => { throw new Error('boom'); })).toThrow('boom');
      expect(kiln.isGradEnabled(), 'isGradEnabled() after a throwing noGrad').toBe(true);
    });

    it('detach cuts the graph and keeps the values', async () => {
      const w = t([1, 2, 3], { requiresGrad: true });
      const y = w.mul(w);
      const d = y.detach();
      expect(d.requiresGrad, 'detach().requiresGrad').toBe(false);
      expect(d.isLeaf, 'detach().isLeaf').toBe(true);
      expect(d.gradFn, 'detach().gradFn').toBeNull();
      expectValues(await values(d), [1, 4, 9], EXACT, 'detach() values');
      // gradient flows only through the non-detached path
      const loss = y.add(d.mul(w)).sum(); // d/dw = 2w + d = 2w + w^2
      loss.backward();
      expectValues(await values(w.grad!), [3, 8, 15], TOL, 'w.grad through y + detach(y)*w');
    });
  });

  describe('leaves and gradFn', () => {
    it('isLeaf', () => {
      const a = t([1, 2], { requiresGrad: true });
      const c = t([3, 4]);
      expect(a.isLeaf, 'user-created tensor requiring grad').toBe(true);
      expect(c.isLeaf, 'user-created tensor').toBe(true);
      expect(a.mul(2).isLeaf, 'result of an op on a tensor requiring grad').toBe(false);
      expect(c.mul(2).isLeaf, 'result of an op on tensors not requiring grad').toBe(true);
      expect(a.mul(2).requiresGrad).toBe(true);
      expect(c.mul(2).requiresGrad).toBe(false);
    });

    it("gradFn names follow PyTorch ('AddBackward', 'MulBackward', 'SumBackward')", () => {
      const a = t([1, 2], { requiresGrad: true });
      const b = t([3, 4], { requiresGrad: true });
      expect(a.gradFn, 'leaf gradFn').toBeNull();
      expect(a.add(b).gradFn, 'a.add(b).gradFn').toBe('AddBackward');
      expect(a.mul(b).gradFn, 'a.mul(b).gradFn').toBe('MulBackward');
      expect(a.sum().gradFn, 'a.sum().gradFn').toBe('SumBackward');
      expect(t([1, 2]).add(1).gradFn, 'gradFn without requiresGrad').toBeNull();
    });

    it('non-leaf tensors get no .grad; leaves that do not require grad neither', async () => {
      const a = t([1, 2], { requiresGrad: true });
      const c = t([3, 4]);
      const h = a.mul(c);
      h.sum().backward();
      expect(h.grad, 'non-leaf .grad').toBeNull();
      expect(c.grad, 'constant .grad').toBeNull();
      expectValues(await values(a.grad!), [3, 4], EXACT, 'a.grad');
    });
  });

  describe('backward', () => {
    it('gradients accumulate across two backward calls with retainGraph', async () => {
      const w = t([1, -2, 3], { requiresGrad: true });
      const loss = w.mul(w).sum();
      loss.backward(undefined, { retainGraph: true });
      expectValues(await values(w.grad!), [2, -4, 6], EXACT, 'w.grad after first backward');
      loss.backward();
      expectValues(await values(w.grad!), [4, -8, 12], EXACT, 'w.grad after second backward');
    });

    it('gradients accumulate across two separate graphs', async () => {
      const w = t([1, 2], { requiresGrad: true });
      w.mul(3).sum().backward();
      w.mul(w).sum().backward();
      expectValues(await values(w.grad!), [5, 7], EXACT, 'w.grad');
    });

    it('a second backward through the same graph without retainGraph throws, mentioning retainGraph', async () => {
      const w = t([1, 2], { requiresGrad: true });
      const loss = w.mul(w).sum();
      loss.backward();
      expectThrows(() => loss.backward(), [/retainGraph/], 'second backward');
      expectValues(await values(w.grad!), [2, 4], EXACT, 'w.grad unchanged after the failed backward');
    });

    it('backward on a non-scalar output without a gradient throws', async () => {
      const w = t([1, 2], { requiresGrad: true });
      const y = w.mul(2);
      expectThrows(() => y.backward(), [/./], 'non-scalar backward()');
      expect(w.grad, 'w.grad after the failed backward').toBeNull();
      // with a gradient it works
      y.backward(t([1, 10]));
      expectValues(await values(w.grad!), [2, 20], EXACT, 'w.grad with an explicit gradient');
    });

    it('backward on a tensor that does not require grad throws', () => {
      const y = t([1, 2]).sum();
      expectThrows(() => y.backward(), [/./], 'backward() on a tensor without grad');
    });

    it('gradients broadcast back to the input shape', async () => {
      const a = t([[1], [2], [3]], { requiresGrad: true }); // [3,1]
      const b = t([1, 2, 3, 4], { requiresGrad: true }); // [4]
      a.mul(b).sum().backward();
      expectValues(await values(a.grad!), [10, 10, 10], EXACT, 'a.grad');
      expectValues(await values(b.grad!), [6, 6, 6, 6], EXACT, 'b.grad');
      expect(a.grad!.shape).toEqual([3, 1]);
      expect(b.grad!.shape).toEqual([4]);
    });

    it('a tensor used twice gets the sum of both paths', async () => {
      const x = t(3.0, { requiresGrad: true });
      const y = x.mul(x).add(x.mul(2)); // dy/dx = 2x + 2
      y.backward();
      expect(await x.grad!.item(), 'x.grad').toBe(8);
    });

    it('autograd.grad returns gradients and leaves .grad untouched', async () => {
      const x = t([1, 2, 3], { requiresGrad: true });
      const y = x.mul(x).sum();
      const [gx] = kiln.autograd.grad([y], [x]);
      expectValues(await values(gx!), [2, 4, 6], EXACT, 'dy/dx');
      expect(x.grad, 'x.grad after autograd.grad').toBeNull();
    });

    it('autograd.grad with allowUnused returns null for an unused input', async () => {
      const x = t([1, 2], { requiresGrad: true });
      const u = t([5, 6], { requiresGrad: true });
      const y = x.mul(3).sum();
      const [gx, gu] = kiln.autograd.grad([y], [x, u], { allowUnused: true });
      expectValues(await values(gx!), [3, 3], EXACT, 'dy/dx');
      expect(gu, 'gradient of an unused input with allowUnused').toBeNull();
    });
  });
});
