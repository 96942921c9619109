import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import type { Tensor } from '../index.ts';
import { run as runLinearRegression } from '../examples/linear-regression.ts';
import { run as runAutograd } from '../examples/autograd.ts';
import { run as runDose } from '../examples/dose.ts';

const { data, tensor } = kiln;

/** n rows: x[i] = [10 i, 10 i + 1] (float32), y[i] = i (int32). */
function makeDataset(n: number): kiln.data.TensorDataset {
  const x = new Float32Array(n * 2);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    x[2 * i] = 10 * i;
    x[2 * i + 1] = 10 * i + 1;
    y[i] = i;
  }
  return new data.TensorDataset(tensor(x, { shape: [n, 2] }), tensor(y, { shape: [n], dtype: 'int32' }));
}

const values = (t: Tensor): number[] => Array.from(t.dataSync() as ArrayLike<number>);

/** The y values of every batch of one pass, checking that x matches y row by row. */
function epochOrder(loader: kiln.data.DataLoader): number[][] {
  const batches: number[][] = [];
  for (const [x, y] of loader) {
    expect(x.shape[0]).toBe(y.shape[0]);
    expect(x.shape[1]).toBe(2);
    const ys = values(y);
    const xs = values(x);
    ys.forEach((id, i) => {
      expect(xs[2 * i]).toBe(10 * id);
      expect(xs[2 * i + 1]).toBe(10 * id + 1);
    });
    batches.push(ys);
  }
  return batches;
}

describe('TensorDataset', () => {
  it('has a length and returns the i-th row of each tensor', () => {
    const ds = makeDataset(5);
    expect(ds.length).toBe(5);
    expect(ds.tensors.length).toBe(2);
    const [x, y] = ds.get(3);
    expect(x.shape).toEqual([2]);
    expect(values(x)).toEqual([30, 31]);
    expect(y.shape).toEqual([]);
    expect(values(y)).toEqual([3]);
    expect(() => ds.get(5)).toThrow(/out of range/);
  });

  it('rejects tensors whose first dimensions differ, naming both shapes', () => {
    expect(() => new data.TensorDataset(kiln.zeros([3, 2]), kiln.zeros([4]))).toThrow(/\[3, 2\].*\[4\]/);
  });
});

describe('DataLoader', () => {
  it('counts batches, keeps a short last batch, or drops it', () => {
    const ds = makeDataset(10);
    const loader = new data.DataLoader(ds, { batchSize: 3 });
    expect(loader.length).toBe(4);
    const batches = epochOrder(loader);
    expect(batches).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]);

    const dropped = new data.DataLoader(ds, { batchSize: 3, dropLast: true });
    expect(dropped.length).toBe(3);
    expect(epochOrder(dropped)).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8]]);

    const exact = new data.DataLoader(ds, { batchSize: 5, dropLast: true });
    expect(exact.length).toBe(2);
    expect(new data.DataLoader(ds).length).toBe(10); // batchSize defaults to 1
  });

  it('keeps dtypes and trailing shapes', () => {
    const loader = new data.DataLoader(makeDataset(7), { batchSize: 4 });
    const [[x0, y0], [x1, y1]] = [...loader];
    expect(x0.dtype).toBe('float32');
    expect(y0.dtype).toBe('int32');
    expect(x0.shape).toEqual([4, 2]);
    expect(y0.shape).toEqual([4]);
    expect(x1.shape).toEqual([3, 2]);
    expect(y1.shape).toEqual([3]);
  });

  it('shuffles reproducibly with a seed, a new permutation every epoch', () => {
    const ds = makeDataset(50);
    const a = new data.DataLoader(ds, { batchSize: 8, shuffle: true, seed: 42 });
    const b = new data.DataLoader(ds, { batchSize: 8, shuffle: true, seed: 42 });
    const a1 = epochOrder(a);
    const a2 = epochOrder(a);
    expect(epochOrder(b)).toEqual(a1);
    expect(epochOrder(b)).toEqual(a2);
    for (const order of [a1, a2]) {
      expect(order.length).toBe(7);
      expect(order.map((batch) => batch.length)).toEqual([8, 8, 8, 8, 8, 8, 2]);
      const flat = order.flat();
      expect([...flat].sort((p, q) => p - q)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    }
    expect(a1.flat()).not.toEqual(a2.flat());
    expect(a1.flat()).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
    const c = new data.DataLoader(ds, { batchSize: 8, shuffle: true, seed: 7 });
    expect(epochOrder(c).flat()).not.toEqual(a1.flat());
  });

  it('without a seed, shuffles reproducibly after kiln.manualSeed', () => {
    const ds = makeDataset(30);
    kiln.manualSeed(123);
    const a = epochOrder(new data.DataLoader(ds, { batchSize: 4, shuffle: true })).flat();
    kiln.manualSeed(123);
    const b = epochOrder(new data.DataLoader(ds, { batchSize: 4, shuffle: true })).flat();
    expect(b).toEqual(a);
    expect([...a].sort((p, q) => p - q)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  it('drops the short batch of a shuffled epoch with dropLast', () => {
    const loader = new data.DataLoader(makeDataset(50), { batchSize: 8, shuffle: true, seed: 1, dropLast: true });
    const order = epochOrder(loader);
    expect(order.length).toBe(6);
    expect(new Set(order.flat()).size).toBe(48);
  });

  it('iterates with for await as well', async () => {
    const loader = new data.DataLoader(makeDataset(5), { batchSize: 2 });
    const ys: number[][] = [];
    for await (const [, y] of loader) ys.push(values(y));
    expect(ys).toEqual([[0, 1], [2, 3], [4]]);
  });

  it('rejects a bad batchSize', () => {
    expect(() => new data.DataLoader(makeDataset(3), { batchSize: 0 })).toThrow(/batchSize/);
  });
});

describe('mnist', () => {
  // Class counts of the real MNIST splits.
  const counts = {
    train: [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    test: [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
  };
  for (const split of ['train', 'test'] as const) {
    it(`${split}: shapes, dtypes, ranges and label counts`, () => {
      const ds = data.mnist({ split });
      const n = split === 'train' ? 60000 : 10000;
      expect(ds.length).toBe(n);
      const [images, labels] = ds.tensors;
      expect(images.shape).toEqual([n, 1, 28, 28]);
      expect(images.dtype).toBe('float32');
      expect(labels.shape).toEqual([n]);
      expect(labels.dtype).toBe('int32');
      const px = images.dataSync() as Float32Array;
      let min = Infinity;
      let max = -Infinity;
      let sum = 0;
      for (let i = 0; i < px.length; i++) {
        const v = px[i];
        if (v < min) min = v;
        if (v > max) max = v;
        sum += v;
      }
      expect(min).toBe(0);
      expect(max).toBe(1);
      expect(sum / px.length).toBeGreaterThan(0.12); // MNIST's mean pixel is about 0.13
      expect(sum / px.length).toBeLessThan(0.14);
      const hist = new Array<number>(10).fill(0);
      for (const l of labels.dataSync() as Int32Array) hist[l]++;
      expect(hist).toEqual(counts[split]);
      expect(data.mnist({ split })).toBe(ds); // cached
    });
  }

  // Its speed is measured in bench/, not here (tests stay deterministic).
  it('a shuffled epoch of 60000 images in batches of 64 is complete', () => {
    const loader = new data.DataLoader(data.mnist({ split: 'train' }), { batchSize: 64, shuffle: true, seed: 0 });
    expect(loader.length).toBe(938);
    let rows = 0;
    let last: Tensor[] = [];
    for (const batch of loader) {
      rows += batch[0].shape[0];
      last = batch;
    }
    expect(rows).toBe(60000);
    expect(last[0].shape).toEqual([32, 1, 28, 28]);
    expect(last[1].shape).toEqual([32]);
  });
});

describe('examples', () => {
  it('linear regression recovers w and b', async () => {
    const r = await runLinearRegression({ log: false });
    expect(r.losses.length).toBe(3);
    expect(r.losses[2]).toBeLessThan(1e-3);
    for (const e of r.wError) expect(Math.abs(e)).toBeLessThan(0.01);
    expect(Math.abs(r.bError)).toBeLessThan(0.01);
  });

  it('autograd demonstrations give the seeds’ numbers', async () => {
    const r = await runAutograd({ log: false });
    expect(r.powGrad).toBeCloseTo(8 * Math.log(2), 4);
    expect(r.chainGrads).toEqual({ w1: 9520, w2: 7140, w3: 5712 });
    expect(r.manualUpdate[0]).toBeCloseTo(3 - 95.2, 3);
    expect(r.manualUpdate[1]).toBeCloseTo(4 - 71.4, 3);
    expect(r.manualUpdate[2]).toBeCloseTo(5 - 57.12, 3);
    expect(r.linearGrads).toEqual({ x: 3, w: 1, b: 1 });
    expect(r.retainGraph).toEqual({ first: [4, 2], second: [8, 4], zeroed: [0, 0], afterZero: [4, 2] });
    expect(r.secondDerivative).toEqual({ first: 12, second: 6 });
    expect(r.requiresGrad).toEqual({ normal: true, noGrad: false, detached: false });
    expect(r.gradFns.z).toMatch(/AddBackward/);
    expect(r.gradFns.loss).not.toBeNull();
    expect(r.w2Only).toBeCloseTo(2 - 0.98 ** 20, 4); // w2 <- w2 - 0.01 * 2 (w2 - 2), 20 times from 1
  });

  it('the dose network trains final_bias to about -16 and stops at epoch 34', async () => {
    const r = await runDose({ log: false });
    expect(r.stoppedAtEpoch).toBe(34);
    expect(r.finalBias).toBeCloseTo(-16.0019, 3);
    expect(r.effectiveness[0]).toBeCloseTo(0, 4);
    expect(r.effectiveness[5]).toBeCloseTo(17.01 - 16.0019, 3);
    expect(r.effectiveness[10]).toBeCloseTo(0, 4);
  });
});
