// Random data and initial weights for the MNIST CNN benchmark (bench/models.ts), from a fixed seed, so
// every framework starts one training step of PyTorch's examples/mnist Net from identical numbers.
// Weights are in PyTorch's layout (conv [out, in, kh, kw], linear [out, in]) with PyTorch's default
// init range U(-1/sqrt(fan_in), 1/sqrt(fan_in)); a peer with another layout (tfjs: NHWC, [in, out])
// rearranges them with `permute`.
import { rng, uniformArray } from './timing.ts';

type F32 = Float32Array<ArrayBuffer>;

export interface CnnArray {
  data: F32;
  shape: number[];
}

export interface CnnData {
  batch: number;
  /** Images [batch, 1, 28, 28], uniform in [-1, 1) (about the range of normalized MNIST). */
  x: F32;
  /** Labels [batch] in 0..9. */
  y: Int32Array<ArrayBuffer>;
  /** PyTorch parameter names (conv1.weight, ..., fc2.bias) to arrays in PyTorch's layout. */
  params: Record<CnnParam, CnnArray>;
}

export const CNN_PARAMS = ['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias', 'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'] as const;
export type CnnParam = (typeof CNN_PARAMS)[number];
export const CNN_BATCH = 64;
export const CNN_SEED = 1;
/** PyTorch's Adadelta defaults, with main.py's lr 1.0: every framework runs this update. */
export const ADADELTA = { lr: 1.0, rho: 0.9, eps: 1e-6 } as const;

export function cnnData(seed = CNN_SEED, batch = CNN_BATCH): CnnData {
  const next = rng(seed);
  const init = (shape: number[], fanIn: number): CnnArray => {
    const k = 1 / Math.sqrt(fanIn);
    return { data: uniformArray(shape.reduce((n, d) => n * d, 1), -k, k, next), shape };
  };
  const params: Record<CnnParam, CnnArray> = {
    'conv1.weight': init([32, 1, 3, 3], 9),
    'conv1.bias': init([32], 9),
    'conv2.weight': init([64, 32, 3, 3], 288),
    'conv2.bias': init([64], 288),
    'fc1.weight': init([128, 9216], 9216),
    'fc1.bias': init([128], 9216),
    'fc2.weight': init([10, 128], 128),
    'fc2.bias': init([10], 128),
  };
  const x = uniformArray(batch * 28 * 28, -1, 1, next);
  const y = new Int32Array(batch);
  for (let i = 0; i < batch; i++) y[i] = Math.floor(next() * 10);
  return { batch, x, y, params };
}

/** `data` of row-major `shape` with its axes reordered: result axis i is input axis perm[i]. */
export function permute(data: F32, shape: number[], perm: number[]): F32 {
  const n = shape.length;
  if (perm.length !== n || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) throw new Error(`permute: [${perm}] is not a permutation of the ${n} axes of shape [${shape}]`);
  const inStrides = new Array<number>(n);
  for (let i = n - 1, s = 1; i >= 0; i--) { inStrides[i] = s; s *= shape[i]!; }
  const outShape = perm.map((p) => shape[p]!);
  const strides = perm.map((p) => inStrides[p]!);
  const out = new Float32Array(data.length);
  const idx = new Array<number>(n).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let i = 0; i < n; i++) src += idx[i]! * strides[i]!;
    out[o] = data[src]!;
    for (let i = n - 1; i >= 0; i--) {
      if (++idx[i]! < outShape[i]!) break;
      idx[i] = 0;
    }
  }
  return out;
}
