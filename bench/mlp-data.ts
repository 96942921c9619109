// Random data and initial weights for the MLP benchmark, from a fixed seed, so
// the JavaScript peers (tfjs, jax-js) start from identical numbers. Weights are
// stored [in, out] (x @ W) with PyTorch's default Linear init range
// U(-1/sqrt(in), 1/sqrt(in)). kiln and PyTorch build their own nn.Linear layers
// from their own seeded generators (the values do not change the timings).
import { rng, uniformArray } from './timing.ts';

type F32 = Float32Array<ArrayBuffer>;

export interface MlpData {
  batch: number;
  sizes: [number, number, number, number];
  x: F32;
  y: Int32Array<ArrayBuffer>;
  w1: F32; b1: F32;
  w2: F32; b2: F32;
  w3: F32; b3: F32;
}

export const MLP_SIZES: [number, number, number, number] = [784, 512, 512, 10];
export const MLP_BATCH = 128;
export const MLP_SEED = 1234;

export function mlpData(seed = MLP_SEED, batch = MLP_BATCH, sizes = MLP_SIZES): MlpData {
  const next = rng(seed);
  const layer = (i: number, o: number) => {
    const k = 1 / Math.sqrt(i);
    return [uniformArray(i * o, -k, k, next), uniformArray(o, -k, k, next)] as const;
  };
  const [w1, b1] = layer(sizes[0], sizes[1]);
  const [w2, b2] = layer(sizes[1], sizes[2]);
  const [w3, b3] = layer(sizes[2], sizes[3]);
  const x = uniformArray(batch * sizes[0], 0, 1, next);
  const y = new Int32Array(batch);
  for (let i = 0; i < batch; i++) y[i] = Math.floor(next() * sizes[3]);
  return { batch, sizes, x, y, w1, b1, w2, b2, w3, b3 };
}
