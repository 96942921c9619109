// Bad input gets a clear Error that names the problem, and changes nothing
// (API.md, "Errors"): the inputs keep their values and their .grad.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values } from './golden.ts';

const { F } = kiln;

function check(err: unknown, patterns: RegExp[], what: string): string {
  if (err === undefined) throw new Error(`${what}: expected an error, but nothing was thrown`);
  if (!(err instanceof Error)) throw new Error(`${what}: expected an Error instance, got ${typeof err}: ${String(err)}`);
  for (const p of patterns) {
    if (!p.test(err.message)) throw new Error(`${what}: error message ${JSON.stringify(err.message)} does not match ${p}`);
  }
  return err.message;
}

/** fn must throw (synchronously) an Error whose message matches every pattern. */
function expectThrows(fn: () => unknown, patterns: RegExp[], what: string): string {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  return check(err, patterns, what);
}

/** fn must throw or reject with an Error whose message matches every pattern. */
async function expectRejects(fn: () => unknown, patterns: RegExp[], what: string): Promise<string> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  return check(err, patterns, what);
}

/** Shape [a, b, ...] written as the numbers with any separator: "[2, 3]", "[2,3]", "(2, 3)", "2x3". */
const shapeRe = (...dims: number[]) => new RegExp(dims.map(String).join('\\s*[,x×]\\s*'));

/** Snapshot values and grads; `unchanged()` asserts they are as they were. */
async function snapshot(label: string, ts: Record<string, kiln.Tensor>) {
  const before: Record<string, { v: number[]; g: number[] | null; shape: number[] }> = {};
  for (const [n, t] of Object.entries(ts)) {
    before[n] = { v: await values(t), g: t.grad ? await values(t.grad) : null, shape: [...t.shape] };
  }
  return async () => {
    for (const [n, t] of Object.entries(ts)) {
      const b = before[n];
      expect(t.shape, `${label}: ${n}.shape unchanged`).toEqual(b.shape);
      expectValues(await values(t), b.v, 'exact', `${label}: ${n} values unchanged`);
      if (b.g === null) expect(t.grad, `${label}: ${n}.grad stays null`).toBeNull();
      else expectValues(await values(t.grad!), b.g, 'exact', `${label}: ${n}.grad unchanged`);
    }
  };
}

describeEachDevice('errors', (device) => {
  const t = (data: any, opts: Record<string, unknown> = {}) => kiln.tensor(data, { device, ...opts });
  const ints = (data: number[], shape: number[]) => kiln.tensor(Int32Array.from(data), { shape, device });

  describe('mismatched shapes name both shapes and the op', () => {
    it('add [2,3] + [4,5]', async () => {
      const a = t([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
      const b = t([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]], { requiresGrad: true });
      const same = await snapshot('add', { a, b });
      expectThrows(() => a.add(b), [/add/i, shapeRe(2, 3), shapeRe(4, 5)], 'a.add(b) with shapes [2,3], [4,5]');
      await same();
    });

    it('mul [3] * [4]', async () => {
      const a = t([1, 2, 3]);
      const b = t([1, 2, 3, 4]);
      const same = await snapshot('mul', { a, b });
      expectThrows(() => a.mul(b), [/mul/i, /\[\s*3\s*\]|\(\s*3\s*,?\s*\)/, /\[\s*4\s*\]|\(\s*4\s*,?\s*\)/], 'a.mul(b) with shapes [3], [4]');
      await same();
    });

    it('matmul [2,3] @ [4,5]', async () => {
      const a = t([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
      const b = kiln.ones([4, 5], { device, requiresGrad: true });
      const same = await snapshot('matmul', { a, b });
      expectThrows(() => a.matmul(b), [/matmul/i, shapeRe(2, 3), shapeRe(4, 5)], 'a.matmul(b) with shapes [2,3], [4,5]');
      await same();
    });

    it('mm with a 1-D argument', async () => {
      const a = t([[1, 2, 3], [4, 5, 6]]);
      const b = t([1, 2, 3]);
      expectThrows(() => a.mm(b), [/mm/i], 'a.mm(1-D)');
    });

    it('cat of [2,3] and [2,4] along dim 0', async () => {
      const a = kiln.ones([2, 3], { device });
      const b = kiln.ones([2, 4], { device });
      const same = await snapshot('cat', { a, b });
      expectThrows(() => kiln.cat([a, b], 0), [/cat/i, shapeRe(2, 3), shapeRe(2, 4)], 'cat([2,3], [2,4], 0)');
      await same();
    });

    it('mseLoss with inputs of different sizes', () => {
      const a = kiln.ones([3], { device, requiresGrad: true });
      const b = kiln.ones([4], { device });
      expectThrows(() => F.mseLoss(a, b), [/\b3\b/, /\b4\b/], 'mseLoss([3], [4])');
    });
  });

  describe('out-of-range dims name the dim and the valid range', () => {
    it('sum(5) on a 2-D tensor', async () => {
      const x = t([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
      const same = await snapshot('sum', { x });
      expectThrows(() => x.sum(5), [/dim/i, /\b5\b/, /-2\D+1\b/], 'x.sum(5) on [2,3]');
      await same();
    });

    it('softmax(-3) on a 2-D tensor', () => {
      const x = t([[1, 2, 3], [4, 5, 6]]);
      expectThrows(() => x.softmax(-3), [/dim/i, /-3/, /-2\D+1\b/], 'x.softmax(-3) on [2,3]');
    });

    it('transpose(0, 2) on a 2-D tensor', () => {
      const x = t([[1, 2, 3], [4, 5, 6]]);
      expectThrows(() => x.transpose(0, 2), [/dim/i, /\b2\b/, /-2\D+1\b/], 'x.transpose(0, 2) on [2,3]');
    });

    it('unsqueeze(3) on a 2-D tensor (valid range [-3, 2])', () => {
      const x = t([[1, 2, 3], [4, 5, 6]]);
      expectThrows(() => x.unsqueeze(3), [/dim/i, /\b3\b/, /-3\D+2\b/], 'x.unsqueeze(3) on [2,3]');
    });

    it('cat along dim 2 of 2-D tensors', () => {
      const a = kiln.ones([2, 3], { device });
      expectThrows(() => kiln.cat([a, a], 2), [/dim/i, /\b2\b/], 'cat([a, a], 2) on [2,3]');
    });
  });

  describe('wrong dtypes name the op and the dtype expected', () => {
    it('crossEntropy with float32 targets', async () => {
      const x = t([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
      const y = t([0, 2]);
      const same = await snapshot('crossEntropy', { x, y });
      expectThrows(() => F.crossEntropy(x, y), [/cross.?entropy|nll.?loss/i, /int32/], 'crossEntropy(x, float targets)');
      await same();
    });

    it('gather with float32 indices', async () => {
      const x = t([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
      const i = t([[0, 1], [2, 0]]);
      const same = await snapshot('gather', { x, i });
      expectThrows(() => x.gather(1, i), [/gather/i, /int32/], 'x.gather(1, float indices)');
      await same();
    });

    it('indexSelect with float32 indices', () => {
      const x = t([[1, 2, 3], [4, 5, 6]]);
      expectThrows(() => x.indexSelect(0, t([0, 1])), [/index.?select/i, /int32/], 'x.indexSelect(0, float indices)');
    });

    it('requiresGrad on an int32 tensor', () => {
      expectThrows(() => kiln.tensor(Int32Array.from([1, 2]), { shape: [2], device, requiresGrad: true }), [/float/i],
        'int32 tensor with requiresGrad');
    });
  });

  describe('autograd misuse', () => {
    it('a second backward without retainGraph mentions retainGraph and leaves .grad as it was', async () => {
      const w = t([1, 2, 3], { requiresGrad: true });
      const loss = w.mul(w).sum();
      loss.backward();
      const same = await snapshot('second backward', { w });
      expectThrows(() => loss.backward(), [/retainGraph/], 'loss.backward() twice');
      await same();
    });

    it('an in-place op on a leaf that requires grad throws outside noGrad, works inside', async () => {
      const w = t([1, 2, 3], { requiresGrad: true });
      const same = await snapshot('add_ on leaf', { w });
      expectThrows(() => w.add_(1), [/leaf|in-?place|requires.?grad/i], 'w.add_(1) on a leaf requiring grad');
      expectThrows(() => w.mul_(2), [/leaf|in-?place|requires.?grad/i], 'w.mul_(2) on a leaf requiring grad');
      expectThrows(() => w.zero_(), [/leaf|in-?place|requires.?grad/i], 'w.zero_() on a leaf requiring grad');
      await same();
      kiln.noGrad(() => w.add_(1));
      expectValues(await values(w), [2, 3, 4], 'exact', 'w after add_(1) under noGrad');
      expect(w.requiresGrad).toBe(true);
    });
  });

  describe('reading values', () => {
    it('item() on a multi-element tensor', async () => {
      const x = t([[1, 2, 3], [4, 5, 6]]);
      await expectRejects(() => x.item(), [/item|element|scalar/i], 'item() on 6 elements');
      expectValues(await values(x), [1, 2, 3, 4, 5, 6], 'exact', 'x unchanged');
      if (device === 'cpu') expectThrows(() => x.itemSync(), [/item|element|scalar/i], 'itemSync() on 6 elements');
    });

    it.runIf(device === 'webgpu')('sync readers on webgpu throw an error naming the async method', async () => {
      const x = t([[1, 2], [3, 4]]);
      const s = t(5);
      expectThrows(() => x.dataSync(), [/\bdata\(\)|await .*data\b|\.data\b/], 'dataSync() on webgpu');
      expectThrows(() => x.arraySync(), [/\barray\(\)|await .*array\b|\.array\b/], 'arraySync() on webgpu');
      expectThrows(() => s.itemSync(), [/\bitem\(\)|await .*item\b|\.item\b/], 'itemSync() on webgpu');
      expect(await s.item()).toBe(5);
      expect(await x.array()).toEqual([[1, 2], [3, 4]]);
    });

    it.runIf(device === 'cpu')('sync readers work on cpu', () => {
      const x = t([[1, 2], [3, 4]]);
      expect(Array.from(x.dataSync())).toEqual([1, 2, 3, 4]);
      expect(x.arraySync()).toEqual([[1, 2], [3, 4]]);
      expect(t(5).itemSync()).toBe(5);
    });
  });

  describe('shapes and indices', () => {
    it('reshape / view to an incompatible size', async () => {
      const x = t([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
      const same = await snapshot('reshape', { x });
      expectThrows(() => x.reshape([4, 2]), [/reshape|view|shape/i, shapeRe(4, 2), /\b6\b|2\s*[,x×]\s*3/], 'x.reshape([4, 2]) of [2,3]');
      expectThrows(() => x.view([5]), [/view|reshape|shape/i, /\b5\b/, /\b6\b|2\s*[,x×]\s*3/], 'x.view([5]) of [2,3]');
      expectThrows(() => x.reshape([-1, -1]), [/-1|infer/i], 'x.reshape([-1, -1])');
      await same();
    });

    it('expand to an incompatible shape', () => {
      const x = t([[1], [2], [3]]);
      expectThrows(() => x.expand([4, 2]), [/expand/i, shapeRe(3, 1), shapeRe(4, 2)], 'x.expand([4, 2]) of [3,1]');
    });

    it('index() out of range names the index and the valid range', async () => {
      const x = t([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
      const same = await snapshot('index', { x });
      expectThrows(() => x.index(5), [/index/i, /\b5\b/, /\b2\b/], 'x.index(5) on [2,3]');
      expectThrows(() => x.index(-3), [/index/i, /-3/, /\b2\b/], 'x.index(-3) on [2,3]');
      expectThrows(() => x.index(null, 3), [/index/i, /\b3\b/], 'x.index(null, 3) on [2,3]');
      expectThrows(() => x.index(0, 0, 0), [/index/i], 'x.index(0, 0, 0): too many indices for a 2-D tensor');
      await same();
    });

    // Index tensors are data; checking them needs the values, which this tests on the CPU.
    it.runIf(device === 'cpu')('indexSelect / gather with out-of-range index tensors', async () => {
      const x = t([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
      const same = await snapshot('indexSelect', { x });
      expectThrows(() => x.indexSelect(0, ints([0, 2], [2])), [/index/i, /\b2\b/], 'x.indexSelect(0, [0, 2]) on [2,3]');
      expectThrows(() => x.gather(1, ints([0, 3, 1, 1], [2, 2])), [/gather|index/i, /\b3\b/], 'x.gather(1, [[0,3],[1,1]]) on [2,3]');
      await same();
    });
  });

  describe('creation', () => {
    it('ragged nested arrays', () => {
      expectThrows(() => kiln.tensor([[1, 2], [3]], { device }), [/./], 'tensor([[1, 2], [3]])');
    });

    it('typed array whose length does not match the shape', () => {
      expectThrows(() => kiln.tensor(Float32Array.from([1, 2, 3]), { shape: [2, 2], device }), [/shape|length|element/i],
        'tensor(Float32Array(3), { shape: [2, 2] })');
    });
  });
});

describe('errors: WebGPU where none is available', () => {
  it('creating a webgpu tensor without an adapter says so', async () => {
    if (await kiln.webgpu.available()) return; // an adapter exists here: nothing to check
    await expectRejects(async () => {
      const x = kiln.tensor([1, 2], { device: 'webgpu' });
      await x.data();
    }, [/webgpu/i], 'tensor on webgpu without an adapter');
  });
});
