// Top-level function forms of the Tensor methods (PyTorch's `torch.exp(x)` next to `x.exp()`), so
// ported code can keep its spelling: `kiln.exp(x)`, `kiln.sum(x, 1)`, `kiln.flatten(x, 1)`. Each one
// is exactly the method; `where`, `cat`, `stack` and `matmul` live in tensor.ts.

import type { DType } from '../ir/dtype.ts';
import type { DeviceName } from './device.ts';
import type { Dims, IndexEntry, Tensor, TensorLike, TopK, VarOptions } from './tensor.ts';

// ---- elementwise ----
export const neg = (x: Tensor): Tensor => x.neg();
export const abs = (x: Tensor): Tensor => x.abs();
export const sign = (x: Tensor): Tensor => x.sign();
export const exp = (x: Tensor): Tensor => x.exp();
export const log = (x: Tensor): Tensor => x.log();
export const log1p = (x: Tensor): Tensor => x.log1p();
export const sqrt = (x: Tensor): Tensor => x.sqrt();
export const rsqrt = (x: Tensor): Tensor => x.rsqrt();
export const sin = (x: Tensor): Tensor => x.sin();
export const cos = (x: Tensor): Tensor => x.cos();
export const tanh = (x: Tensor): Tensor => x.tanh();
export const sigmoid = (x: Tensor): Tensor => x.sigmoid();
export const relu = (x: Tensor): Tensor => x.relu();
export const erf = (x: Tensor): Tensor => x.erf();
export const square = (x: Tensor): Tensor => x.square();
export const reciprocal = (x: Tensor): Tensor => x.reciprocal();
export const clamp = (x: Tensor, min?: number | null, max?: number | null): Tensor => x.clamp(min, max);
export const add = (a: Tensor, b: TensorLike): Tensor => a.add(b);
export const sub = (a: Tensor, b: TensorLike): Tensor => a.sub(b);
export const mul = (a: Tensor, b: TensorLike): Tensor => a.mul(b);
export const div = (a: Tensor, b: TensorLike): Tensor => a.div(b);
export const pow = (a: Tensor, b: TensorLike): Tensor => a.pow(b);
export const maximum = (a: Tensor, b: TensorLike): Tensor => a.maximum(b);
export const minimum = (a: Tensor, b: TensorLike): Tensor => a.minimum(b);
export const eq = (a: Tensor, b: TensorLike): Tensor => a.eq(b);
export const ne = (a: Tensor, b: TensorLike): Tensor => a.ne(b);
export const lt = (a: Tensor, b: TensorLike): Tensor => a.lt(b);
export const le = (a: Tensor, b: TensorLike): Tensor => a.le(b);
export const gt = (a: Tensor, b: TensorLike): Tensor => a.gt(b);
export const ge = (a: Tensor, b: TensorLike): Tensor => a.ge(b);
export const maskedFill = (x: Tensor, mask: Tensor, value: number | Tensor): Tensor => x.maskedFill(mask, value);
export const tril = (x: Tensor, k = 0): Tensor => x.tril(k);
export const triu = (x: Tensor, k = 0): Tensor => x.triu(k);

// ---- reductions ----
export const sum = (x: Tensor, dim?: Dims, keepdim = false): Tensor => x.sum(dim, keepdim);
export const mean = (x: Tensor, dim?: Dims, keepdim = false): Tensor => x.mean(dim, keepdim);
export const max = (x: Tensor, dim?: Dims, keepdim = false): Tensor => x.max(dim, keepdim);
export const min = (x: Tensor, dim?: Dims, keepdim = false): Tensor => x.min(dim, keepdim);
export const argmax = (x: Tensor, dim?: number, keepdim = false): Tensor => x.argmax(dim, keepdim);
export const argmin = (x: Tensor, dim?: number, keepdim = false): Tensor => x.argmin(dim, keepdim);
export const logsumexp = (x: Tensor, dim: Dims, keepdim = false): Tensor => x.logsumexp(dim, keepdim);
export const softmax = (x: Tensor, dim: number): Tensor => x.softmax(dim);
export const logSoftmax = (x: Tensor, dim: number): Tensor => x.logSoftmax(dim);
const variance = (x: Tensor, dim?: Dims, opts?: VarOptions): Tensor => x.var(dim, opts);
export { variance as var };
export const std = (x: Tensor, dim?: Dims, opts?: VarOptions): Tensor => x.std(dim, opts);
export const cumsum = (x: Tensor, dim: number): Tensor => x.cumsum(dim);
export const topk = (x: Tensor, k: number, dim = -1, largest = true): TopK => x.topk(k, dim, largest);

// ---- linear algebra and shape ----
export const mm = (a: Tensor, b: Tensor): Tensor => a.mm(b);
export const reshape = (x: Tensor, shape: readonly number[]): Tensor => x.reshape(shape);
export const flatten = (x: Tensor, startDim = 0, endDim = -1): Tensor => x.flatten(startDim, endDim);
export const squeeze = (x: Tensor, dim?: Dims): Tensor => x.squeeze(dim);
export const unsqueeze = (x: Tensor, dim: number): Tensor => x.unsqueeze(dim);
export const transpose = (x: Tensor, dim0: number, dim1: number): Tensor => x.transpose(dim0, dim1);
export const permute = (x: Tensor, dims: readonly number[]): Tensor => x.permute(dims);
export const split = (x: Tensor, sizeOrSizes: number | readonly number[], dim = 0): Tensor[] => x.split(sizeOrSizes, dim);
export const chunk = (x: Tensor, n: number, dim = 0): Tensor[] => x.chunk(n, dim);
export const index = (x: Tensor, ...idx: (IndexEntry | Tensor)[]): Tensor => x.index(...idx);
export const indexSelect = (x: Tensor, dim: number, indices: Tensor): Tensor => x.indexSelect(dim, indices);
export const gather = (x: Tensor, dim: number, indices: Tensor): Tensor => x.gather(dim, indices);
export const clone = (x: Tensor): Tensor => x.clone();
export const detach = (x: Tensor): Tensor => x.detach();
export const to = (x: Tensor, deviceOrDtype: DeviceName | DType): Tensor => x.to(deviceOrDtype);
