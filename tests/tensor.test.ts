// Tensor creation, properties, reading values, conversions and in-place ops (API.md, "Tensors").
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values } from './golden.ts';

const f32 = (xs: number[]) => xs.map(Math.fround);

describeEachDevice('tensor', (device) => {
  const t = (data: any, opts: Record<string, unknown> = {}) => kiln.tensor(data, { device, ...opts });

  describe('creation', () => {
    it('tensor from nested arrays: shape, float32 by default, row-major values', async () => {
      const x = t([[1, 2, 3], [4, 5, 6.5]]);
      expect(x.shape).toEqual([2, 3]);
      expect(x.dtype).toBe('float32');
      expect(x.device).toBe(device);
      expect(x.ndim).toBe(2);
      expect(x.numel()).toBe(6);
      expect(x.requiresGrad).toBe(false);
      expect(x.grad).toBeNull();
      expect(x.isLeaf).toBe(true);
      expect(x.gradFn).toBeNull();
      const d = await x.data();
      expect(d).toBeInstanceOf(Float32Array);
      expectValues(d, [1, 2, 3, 4, 5, 6.5], 'exact', 'values');
    });

    it('tensor from a number is 0-d', async () => {
      const x = t(3.5);
      expect(x.shape).toEqual([]);
      expect(x.ndim).toBe(0);
      expect(x.numel()).toBe(1);
      expect(await x.item()).toBe(3.5);
    });

    it('3-D nested arrays and an empty dimension', async () => {
      const x = t([[[1], [2]], [[3], [4]], [[5], [6]]]);
      expect(x.shape).toEqual([3, 2, 1]);
      expectValues(await values(x), [1, 2, 3, 4, 5, 6], 'exact', 'values');
      const e = t([]);
      expect(e.shape).toEqual([0]);
      expect(e.numel()).toBe(0);
    });

    it('typed arrays with opts.shape keep their type', async () => {
      const a = t(Float32Array.from([1, 2, 3, 4, 5, 6]), { shape: [3, 2] });
      expect(a.shape).toEqual([3, 2]);
      expect(a.dtype).toBe('float32');
      expectValues(await values(a), [1, 2, 3, 4, 5, 6], 'exact', 'Float32Array values');
      const b = t(Int32Array.from([7, -8, 9]), { shape: [3] });
      expect(b.dtype).toBe('int32');
      const bd = await b.data();
      expect(bd).toBeInstanceOf(Int32Array);
      expectValues(bd, [7, -8, 9], 'exact', 'Int32Array values');
      const c = t(Int32Array.from([1, 2, 3, 4]), { shape: [2, 2], dtype: 'float32' });
      expect(c.dtype, 'Int32Array with dtype float32').toBe('float32');
      expectValues(await values(c), [1, 2, 3, 4], 'exact', 'converted values');
    });

    it('the typed array is copied (later writes to it do not change the tensor)', async () => {
      const src = Float32Array.from([1, 2, 3]);
      const x = t(src, { shape: [3] });
      src[0] = 100;
      expectValues(await values(x), [1, 2, 3], 'exact', 'values');
      const d = await x.data();
      d[1] = 200;
      expectValues(await values(x), [1, 2, 3], 'exact', 'data() returns a copy');
    });

    it('booleans make a bool tensor', async () => {
      const x = t([[true, false], [false, true]]);
      expect(x.dtype).toBe('bool');
      expect(x.shape).toEqual([2, 2]);
      expectValues(await values(x), [1, 0, 0, 1], 'exact', 'bool values as 0/1');
      expect(await x.array()).toEqual([[true, false], [false, true]]);
    });

    it('opts.dtype int32 for number data', async () => {
      const x = t([1, 2, 3], { dtype: 'int32' });
      expect(x.dtype).toBe('int32');
      expectValues(await values(x), [1, 2, 3], 'exact', 'values');
    });

    it('requiresGrad option', () => {
      const x = t([1, 2], { requiresGrad: true });
      expect(x.requiresGrad).toBe(true);
      expect(x.isLeaf).toBe(true);
    });

    it('zeros, ones, full', async () => {
      const z = kiln.zeros([2, 3], { device });
      expect(z.shape).toEqual([2, 3]);
      expect(z.dtype).toBe('float32');
      expect(z.device).toBe(device);
      expectValues(await values(z), [0, 0, 0, 0, 0, 0], 'exact', 'zeros');
      const o = kiln.ones([4], { device, dtype: 'int32' });
      expect(o.dtype).toBe('int32');
      expectValues(await values(o), [1, 1, 1, 1], 'exact', 'ones int32');
      const f = kiln.full([2, 2], 7.5, { device });
      expect(f.shape).toEqual([2, 2]);
      expectValues(await values(f), [7.5, 7.5, 7.5, 7.5], 'exact', 'full');
      const s = kiln.zeros([], { device });
      expect(s.shape).toEqual([]);
      expect(await s.item()).toBe(0);
      const r = kiln.ones([3], { device, requiresGrad: true });
      expect(r.requiresGrad).toBe(true);
    });

    it('zerosLike, onesLike keep shape, dtype and device', async () => {
      const x = t(Int32Array.from([1, 2, 3, 4, 5, 6]), { shape: [3, 2] });
      const z = kiln.zerosLike(x);
      expect(z.shape).toEqual([3, 2]);
      expect(z.dtype).toBe('int32');
      expect(z.device).toBe(device);
      expectValues(await values(z), [0, 0, 0, 0, 0, 0], 'exact', 'zerosLike');
      const o = kiln.onesLike(t([[1.5, 2.5]]));
      expect(o.shape).toEqual([1, 2]);
      expect(o.dtype).toBe('float32');
      expectValues(await values(o), [1, 1], 'exact', 'onesLike');
    });

    it('arange', async () => {
      const a = kiln.arange(5, undefined, undefined, { device });
      expect(a.shape).toEqual([5]);
      expectValues(await values(a), [0, 1, 2, 3, 4], 'exact', 'arange(5)');
      expectValues(await values(kiln.arange(2, 6, undefined, { device })), [2, 3, 4, 5], 'exact', 'arange(2, 6)');
      expectValues(await values(kiln.arange(1, 2.5, 0.5, { device })), [1, 1.5, 2], 'exact', 'arange(1, 2.5, 0.5)');
      expectValues(await values(kiln.arange(10, 0, -3, { device })), [10, 7, 4, 1], 'exact', 'arange(10, 0, -3)');
      const i = kiln.arange(0, 4, 1, { device, dtype: 'int32' });
      expect(i.dtype).toBe('int32');
      expectValues(await values(i), [0, 1, 2, 3], 'exact', 'arange int32');
      expect(kiln.arange(3).shape, 'arange(3) without opts').toEqual([3]);
    });

    it('linspace', async () => {
      const l = kiln.linspace(0, 1, 5, { device });
      expect(l.shape).toEqual([5]);
      expect(l.dtype).toBe('float32');
      expectValues(await values(l), [0, 0.25, 0.5, 0.75, 1], 'exact', 'linspace(0, 1, 5)');
      expectValues(await values(kiln.linspace(0, 1, 11, { device })), f32([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]),
        { rtol: 1e-6, atol: 1e-7 }, 'linspace(0, 1, 11)');
      expectValues(await values(kiln.linspace(-1, 1, 1, { device })), [-1], 'exact', 'linspace(-1, 1, 1)');
      expectValues(await values(kiln.linspace(3, -3, 4, { device })), [3, 1, -1, -3], 'exact', 'linspace(3, -3, 4)');
    });

    it('eye', async () => {
      const e = kiln.eye(3, { device });
      expect(e.shape).toEqual([3, 3]);
      expect(e.dtype).toBe('float32');
      expectValues(await values(e), [1, 0, 0, 0, 1, 0, 0, 0, 1], 'exact', 'eye(3)');
      const ei = kiln.eye(2, { device, dtype: 'int32' });
      expect(ei.dtype).toBe('int32');
      expectValues(await values(ei), [1, 0, 0, 1], 'exact', 'eye(2) int32');
    });

    it('rand: shape, float32, values in [0, 1)', async () => {
      const r = kiln.rand([100, 50], { device });
      expect(r.shape).toEqual([100, 50]);
      expect(r.dtype).toBe('float32');
      const v = await values(r);
      const bad = v.findIndex((x) => !(x >= 0 && x < 1));
      expect(bad, `rand value out of [0, 1) at ${bad}: ${v[bad]}`).toBe(-1);
      const mean = v.reduce((s, x) => s + x, 0) / v.length;
      expect(Math.abs(mean - 0.5), `rand mean ${mean}`).toBeLessThan(0.02);
      expect(new Set(v).size, 'rand values are not all the same').toBeGreaterThan(4000);
    });

    it('randn: shape, float32, mean 0 and std 1', async () => {
      const r = kiln.randn([10000], { device });
      expect(r.shape).toEqual([10000]);
      expect(r.dtype).toBe('float32');
      const v = await values(r);
      expect(v.every(Number.isFinite), 'randn values are finite').toBe(true);
      const mean = v.reduce((s, x) => s + x, 0) / v.length;
      const std = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
      expect(Math.abs(mean), `randn mean ${mean}`).toBeLessThan(0.05);
      expect(Math.abs(std - 1), `randn std ${std}`).toBeLessThan(0.05);
      const within1 = v.filter((x) => Math.abs(x) < 1).length / v.length;
      expect(Math.abs(within1 - 0.6827), `fraction within 1 std: ${within1}`).toBeLessThan(0.03);
    });

    it('randint: shape, int32, integers in [low, high)', async () => {
      const r = kiln.randint(-3, 5, [2000], { device });
      expect(r.shape).toEqual([2000]);
      expect(r.dtype).toBe('int32');
      const v = await values(r);
      const bad = v.findIndex((x) => !Number.isInteger(x) || x < -3 || x >= 5);
      expect(bad, `randint value out of range at ${bad}: ${v[bad]}`).toBe(-1);
      expect([...new Set(v)].sort((a, b) => a - b), 'every value in [-3, 5) appears').toEqual([-3, -2, -1, 0, 1, 2, 3, 4]);
    });

    it('manualSeed makes rand, randn and randint reproducible', async () => {
      const draw = async () => {
        const a = await values(kiln.rand([6], { device }));
        const b = await values(kiln.randn([2, 3], { device }));
        const c = await values(kiln.randint(0, 100, [6], { device }));
        return [a, b, c];
      };
      kiln.manualSeed(1234);
      const first = await draw();
      kiln.manualSeed(1234);
      const second = await draw();
      expect(second, 'same seed, same numbers').toEqual(first);
      kiln.manualSeed(4321);
      const third = await draw();
      expect(third[0], 'a different seed gives different numbers').not.toEqual(first[0]);
      // consecutive draws differ
      kiln.manualSeed(1234);
      const x = await values(kiln.rand([6], { device }));
      const y = await values(kiln.rand([6], { device }));
      expect(y, 'consecutive rand() calls differ').not.toEqual(x);
    });

    it('rand and randn take requiresGrad', () => {
      const w = kiln.randn([3, 2], { device, requiresGrad: true });
      expect(w.requiresGrad).toBe(true);
      expect(w.isLeaf).toBe(true);
    });
  });

  describe('reading values', () => {
    it('array() gives nested arrays, item() a number', async () => {
      const x = t([[1, 2, 3], [4, 5, 6]]);
      expect(await x.array()).toEqual([[1, 2, 3], [4, 5, 6]]);
      expect(await t(Int32Array.from([1, 2, 3, 4]), { shape: [2, 1, 2] }).array()).toEqual([[[1, 2]], [[3, 4]]]);
      expect(await t([[2.5]]).item()).toBe(2.5);
      expect(await t(-4).item()).toBe(-4);
      expect(await t([7], { dtype: 'int32' }).item()).toBe(7);
    });

    it("toString() prints like PyTorch: tensor([[1., 2.]], requiresGrad=true)", () => {
      const x = kiln.tensor([[1, 2]], { requiresGrad: true }); // cpu: toString reads values synchronously
      expect(x.toString()).toBe('tensor([[1., 2.]], requiresGrad=true)');
    });
  });

  describe('conversions', () => {
    it('to(device) and back keeps values, shape and dtype', async () => {
      const x = kiln.tensor([[1, 2], [3, 4]]);
      expect(x.device).toBe('cpu');
      const y = x.to(device);
      expect(y.device).toBe(device);
      expect(y.shape).toEqual([2, 2]);
      expectValues(await values(y), [1, 2, 3, 4], 'exact', 'x.to(device)');
      // WebGPU cannot be read synchronously: to('cpu') names the async way, toAsync('cpu') works.
      if (device === 'webgpu') expect(() => y.to('cpu')).toThrow(/toAsync/);
      const z = await y.toAsync('cpu');
      expect(z.device).toBe('cpu');
      expectValues(await values(z), [1, 2, 3, 4], 'exact', 'back to cpu');
      if (device === 'cpu') expectValues(await values(y.to('cpu')), [1, 2, 3, 4], 'exact', 'to(cpu) on cpu');
      const i = await t(Int32Array.from([5, 6]), { shape: [2] }).toAsync('cpu');
      expect(i.dtype).toBe('int32');
    });

    it('to(device) on a leaf requiring grad gives a leaf on the device (README: gradients do not cross devices)', async () => {
      const x = kiln.tensor([1, 2, 3], { requiresGrad: true }); // cpu
      const y = x.to(device);
      expect(y.device).toBe(device);
      expect(y.requiresGrad).toBe(true);
      y.mul(2).sum().backward();
      const onDevice = device === 'cpu' ? x : y; // to('cpu') of a cpu tensor is the tensor itself
      expectValues(await values(onDevice.grad!), [2, 2, 2], 'exact', 'grad on the device');
      expect(onDevice.grad!.device).toBe(device);
    });

    it('clone copies: same values, independent storage, gradient flows', async () => {
      const x = t([1, 2, 3], { requiresGrad: true });
      const c = x.clone();
      expectValues(await values(c), [1, 2, 3], 'exact', 'clone values');
      expect(c.requiresGrad).toBe(true);
      expect(c.isLeaf).toBe(false);
      c.mul(t([1, 2, 3])).sum().backward();
      expectValues(await values(x.grad!), [1, 2, 3], 'exact', 'x.grad through clone');
      const y = t([4, 5, 6]);
      const d = y.clone();
      d.fill_(0);
      expectValues(await values(y), [4, 5, 6], 'exact', 'original after changing the clone');
      expectValues(await values(d), [0, 0, 0], 'exact', 'clone after fill_(0)');
    });

    it('float() and int()', async () => {
      const i = t(Int32Array.from([1, -2, 3]), { shape: [3] });
      const f = i.float();
      expect(f.dtype).toBe('float32');
      expectValues(await values(f), [1, -2, 3], 'exact', 'int32 -> float32');
      const x = t([1.7, -1.7, 2.5, -0.5, 3]);
      const n = x.int();
      expect(n.dtype).toBe('int32');
      expectValues(await values(n), [1, -1, 2, 0, 3], 'exact', 'float32 -> int32 truncates toward zero');
      const b = t([true, false]).float();
      expect(b.dtype).toBe('float32');
      expectValues(await values(b), [1, 0], 'exact', 'bool -> float32');
    });

    it('detach shares nothing with the graph', async () => {
      const x = t([1, 2], { requiresGrad: true });
      const d = x.mul(3).detach();
      expect(d.requiresGrad).toBe(false);
      expectValues(await values(d), [3, 6], 'exact', 'detached values');
    });
  });

  describe('in-place ops under noGrad', () => {
    it('add_ sub_ mul_ with tensors and numbers (broadcasting), returning the tensor itself', async () => {
      const x = t([[1, 2, 3], [4, 5, 6]]);
      let r: unknown;
      kiln.noGrad(() => {
        r = x.add_(t([10, 20, 30]));
      });
      expect(r, 'add_ returns the same tensor').toBe(x);
      expectValues(await values(x), [11, 22, 33, 14, 25, 36], 'exact', 'after add_([10, 20, 30])');
      kiln.noGrad(() => {
        x.sub_(1);
      });
      expectValues(await values(x), [10, 21, 32, 13, 24, 35], 'exact', 'after sub_(1)');
      kiln.noGrad(() => {
        x.mul_(t([[2], [-1]]));
      });
      expectValues(await values(x), [20, 42, 64, -13, -24, -35], 'exact', 'after mul_([[2], [-1]])');
      kiln.noGrad(() => {
        x.mul_(0.5);
        x.add_(t(1));
        x.sub_(t([1, 1, 1]));
      });
      expectValues(await values(x), [10, 21, 32, -6.5, -12, -17.5], 'exact', 'after mul_(0.5), add_(1), sub_(1)');
      expect(x.shape).toEqual([2, 3]);
    });

    it('zero_, fill_, copy_', async () => {
      const x = t([[1, 2], [3, 4]]);
      kiln.noGrad(() => x.fill_(2.5));
      expectValues(await values(x), [2.5, 2.5, 2.5, 2.5], 'exact', 'after fill_(2.5)');
      kiln.noGrad(() => x.zero_());
      expectValues(await values(x), [0, 0, 0, 0], 'exact', 'after zero_()');
      kiln.noGrad(() => x.copy_(t([[5, 6], [7, 8]])));
      expectValues(await values(x), [5, 6, 7, 8], 'exact', 'after copy_');
      kiln.noGrad(() => x.copy_(t([9, 10])));
      expectValues(await values(x), [9, 10, 9, 10], 'exact', 'after copy_ of a broadcast source');
      kiln.noGrad(() => x.copy_(kiln.tensor([[1, 1], [2, 2]]))); // source on the cpu
      expectValues(await values(x), [1, 1, 2, 2], 'exact', 'after copy_ from a cpu tensor');
      expect(x.device).toBe(device);
    });

    it('in-place updates of a parameter under noGrad keep it a leaf that requires grad, and gradients use the new value', async () => {
      const w = t([1, 2, 3], { requiresGrad: true });
      w.mul(w).sum().backward();
      kiln.noGrad(() => w.sub_(w.grad!.mul(0.5))); // w - 0.5 * 2w = 0
      expectValues(await values(w), [0, 0, 0], 'exact', 'w after the update');
      expect(w.isLeaf).toBe(true);
      expect(w.requiresGrad).toBe(true);
      kiln.noGrad(() => w.fill_(1));
      w.grad!.zero_();
      w.mul(w).sum().backward();
      expectValues(await values(w.grad!), [2, 2, 2], 'exact', 'w.grad after fill_(1)');
    });

    it('in-place ops on tensors that do not require grad work outside noGrad too', async () => {
      const x = t([1, 2, 3]);
      x.add_(1);
      x.mul_(2);
      expectValues(await values(x), [4, 6, 8], 'exact', 'after add_(1).mul_(2)');
    });

    it('requiresGrad_(flag)', () => {
      const x = t([1, 2]);
      expect(x.requiresGrad_()).toBe(x);
      expect(x.requiresGrad).toBe(true);
      x.requiresGrad_(false);
      expect(x.requiresGrad).toBe(false);
    });
  });
});
