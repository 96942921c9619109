// Tensor: the user-facing array type. Every operation goes through `dispatch` (one path for eager
// execution and tracing); composite ops (softmax, mean, clamp, indexing, ...) are written here in
// terms of primitives, so autodiff and fusion cover them for free.

import { checkDTypeName, dtypeOfArray, isDType, isFloat, typedArrayFor, type DType, type TypedArray } from '../ir/dtype.ts';
import type { PrimAttrs, Primitive } from '../ir/primitives.ts';
import { broadcastShapes, fmt, inferShape, normAxes, normDim, numel, sameShape } from '../ir/shape.ts';
import { contiguousView, reshapeView, type View } from '../ir/view.ts';
import { isGradEnabled, noGrad, runBackward, type BackwardOptions, type GradNode } from './autograd.ts';
import { backendFor, checkDevice, checkDType, getDefaultDevice, type DeviceName, type Storage } from './device.ts';
import { activeTracer, contiguous, dispatch, writeInto } from './dispatch.ts';

export type TensorLike = Tensor | number | boolean;
/** One entry of `index(...)`: a number selects, null keeps a dimension, [start?, end?, step?] slices. */
export type IndexEntry = number | null | undefined | readonly [(number | null | undefined)?, (number | null | undefined)?, (number | null | undefined)?];
export type Dims = number | readonly number[];
/** Options of var and std: `correction` 1 (default) is Bessel's unbiased estimate, 0 the biased one. */
export interface VarOptions { correction?: number; keepdim?: boolean }
/** What topk returns: `const [values, indices] = x.topk(k)`, or `.values` and `.indices`. */
export class TopK {
  constructor(readonly values: Tensor, readonly indices: Tensor) {}
  *[Symbol.iterator](): Iterator<Tensor> { yield this.values; yield this.indices; }
}

export class Tensor {
  readonly shape: number[];
  readonly dtype: DType;
  readonly device: DeviceName;
  /** device memory; null for a symbolic (traced) tensor */
  _storage: Storage | null;
  _view: View;
  /** the tracer's handle for a symbolic tensor */
  _sym: unknown = null;
  _ctx: GradNode | null = null;
  _requiresGrad = false;
  _grad: Tensor | null = null;
  /** PyTorch's version counter: bumped by every in-place write; shared by views and detach() aliases */
  _vc: { n: number } = { n: 0 };
  /** the tensor this one is a view of (shares its storage or, while tracing, its value) */
  _base: Tensor | null = null;

  private constructor(shape: readonly number[], dtype: DType, device: DeviceName, storage: Storage | null, view: View) {
    this.shape = [...shape];
    this.dtype = dtype;
    this.device = device;
    this._storage = storage;
    this._view = view;
  }

  static _fromStorage(storage: Storage, view: View, dtype: DType): Tensor {
    return new Tensor(view.shape, dtype, storage.device, storage, view);
  }
  static _symbolic(shape: readonly number[], dtype: DType, device: DeviceName, sym: unknown): Tensor {
    const t = new Tensor(shape, dtype, device, null, contiguousView(shape));
    t._sym = sym;
    return t;
  }
  /** Shares this tensor's value (storage or trace handle) without its autograd history. */
  _alias(): Tensor {
    const t = new Tensor(this.shape, this.dtype, this.device, this._storage, this._view);
    t._sym = this._sym;
    t._vc = this._vc;
    return t;
  }
  get _version(): number { return this._vc.n; }
  set _version(n: number) { this._vc.n = n; }
  _setGradNode(node: GradNode): void {
    this._ctx = node;
    this._requiresGrad = true;
  }

  // ---- properties ----
  get requiresGrad(): boolean { return this._requiresGrad; }
  set requiresGrad(flag: boolean) {
    if (!flag && this._ctx) throw new Error('requiresGrad: you can only change requiresGrad flags of leaf tensors (use detach() to get a tensor without history)');
    if (flag && !isFloat(this.dtype)) throw new Error(`requiresGrad: only floating point tensors (float32, float64) can require gradients, got ${this.dtype}`);
    this._requiresGrad = flag;
  }
  requiresGrad_(flag = true): this { this.requiresGrad = flag; return this; }
  get isLeaf(): boolean { return this._ctx === null; }
  get gradFn(): string | null { return this._ctx?.name ?? null; }
  get grad(): Tensor | null {
    const tracer = activeTracer();
    return tracer && this._storage ? tracer.gradRead(this) : this._grad;
  }
  set grad(g: Tensor | null) {
    if (g && !sameShape(g.shape, this.shape)) throw new Error(`grad: assigned grad of shape ${fmt(g.shape)} to a tensor of shape ${fmt(this.shape)}`);
    const tracer = activeTracer();
    if (tracer && this._storage) tracer.gradWrite(this, g);
    else this._grad = g;
  }
  get ndim(): number { return this.shape.length; }
  numel(): number { return numel(this.shape); }
  size(dim?: number): number | number[] { return dim === undefined ? [...this.shape] : this.shape[normDim('size', dim, this.ndim)]; }
  get T(): Tensor { return this.ndim < 2 ? this : this.permute(this.shape.map((_, i) => this.ndim - 1 - i)); }

  // ---- reading values ----
  private _readable(method: string): void {
    if (this._storage === null) activeTracer()!.read(this, method);
  }
  async data(): Promise<TypedArray> {
    this._readable('data()');
    const c = noGrad(() => contiguous(this));
    return backendFor(this.device).read(c._storage!, c._view.offset, this.numel());
  }
  dataSync(): TypedArray {
    this._readable('dataSync()');
    const c = noGrad(() => contiguous(this));
    return backendFor(this.device).readSync(c._storage!, c._view.offset, this.numel(), 'data()');
  }
  async array(): Promise<NestedArray> { return nest(await this.data(), this.shape, this.dtype); }
  arraySync(): NestedArray {
    this._readable('arraySync()');
    if (this.device !== 'cpu') backendFor(this.device).readSync(this._storage!, 0, 0, 'array()');
    return nest(this.dataSync(), this.shape, this.dtype);
  }
  async item(): Promise<number> { this._checkItem(); return Number((await this.data())[0]); }
  itemSync(): number {
    this._readable('itemSync()');
    this._checkItem();
    if (this.device !== 'cpu') backendFor(this.device).readSync(this._storage!, 0, 0, 'item()');
    return Number(this.dataSync()[0]);
  }
  private _checkItem(): void {
    this._readable('item()');
    if (this.numel() !== 1) throw new Error(`item: a Tensor with ${this.numel()} elements cannot be converted to a number (only one-element tensors can)`);
  }
  toString(): string {
    const extras: string[] = [];
    if (this.dtype !== 'float32') extras.push(`dtype=${this.dtype}`);
    if (this.device !== 'cpu') extras.push(`device='${this.device}'`);
    if (this._ctx) extras.push(`gradFn=<${this._ctx.name}>`);
    else if (this._requiresGrad) extras.push('requiresGrad=true');
    let body: string;
    if (this._storage === null) body = `<symbolic ${fmt(this.shape)}>`;
    else if (this.device !== 'cpu') body = `<${fmt(this.shape)} on ${this.device}; await data() to read>`;
    else body = formatValues(this.dataSync(), this.shape, this.dtype);
    return `tensor(${[body, ...extras].join(', ')})`;
  }

  // ---- autograd ----
  backward(gradient?: Tensor | BackwardOptions, opts: BackwardOptions = {}): void {
    if (gradient !== undefined && !(gradient instanceof Tensor)) { opts = gradient; gradient = undefined; }
    if (!this._requiresGrad) throw new Error('backward: element 0 of tensors does not require grad and does not have a gradFn');
    if (gradient === undefined && this.numel() !== 1) {
      throw new Error(`backward: grad can be implicitly created only for scalar outputs (this tensor has shape ${fmt(this.shape)}); pass a gradient`);
    }
    if (gradient && !sameShape(gradient.shape, this.shape)) {
      throw new Error(`backward: gradient has shape ${fmt(gradient.shape)} but the tensor has shape ${fmt(this.shape)}`);
    }
    const g = gradient ?? noGrad(() => full(this.shape, 1, { dtype: this.dtype, device: this.device }));
    runBackward([this], [g], opts);
  }
  /** Leaf accumulation (PyTorch's AccumulateGrad): a fresh contiguous gradient, or the sum with the old one. */
  _accumulateGrad(g: Tensor, createGraph: boolean): void {
    const gd = createGraph ? g : g.detach();
    const old = this.grad;
    this.grad = old ? old.add(gd) : gd.clone();
  }
  detach(): Tensor { return this._alias(); }

  // ---- elementwise ----
  add(o: TensorLike): Tensor { return binary('add', this, o); }
  sub(o: TensorLike): Tensor { return binary('sub', this, o); }
  mul(o: TensorLike): Tensor { return binary('mul', this, o); }
  div(o: TensorLike): Tensor { return binary('div', this, o); }
  pow(o: TensorLike): Tensor { return binary('pow', this, o); }
  maximum(o: TensorLike): Tensor { return binary('maximum', this, o); }
  minimum(o: TensorLike): Tensor { return binary('minimum', this, o); }
  eq(o: TensorLike): Tensor { return binary('eq', this, o); }
  ne(o: TensorLike): Tensor { return binary('ne', this, o); }
  lt(o: TensorLike): Tensor { return binary('lt', this, o); }
  le(o: TensorLike): Tensor { return binary('le', this, o); }
  gt(o: TensorLike): Tensor { return binary('gt', this, o); }
  ge(o: TensorLike): Tensor { return binary('ge', this, o); }
  neg(): Tensor { return dispatch('neg', [this], {}); }
  abs(): Tensor { return dispatch('abs', [this], {}); }
  sign(): Tensor { return dispatch('sign', [this], {}); }
  exp(): Tensor { return dispatch('exp', [this], {}); }
  log(): Tensor { return dispatch('log', [this], {}); }
  sqrt(): Tensor { return dispatch('sqrt', [this], {}); }
  rsqrt(): Tensor { return dispatch('rsqrt', [this], {}); }
  sin(): Tensor { return dispatch('sin', [this], {}); }
  cos(): Tensor { return dispatch('cos', [this], {}); }
  tanh(): Tensor { return dispatch('tanh', [this], {}); }
  sigmoid(): Tensor { return dispatch('sigmoid', [this], {}); }
  relu(): Tensor { return dispatch('relu', [this], {}); }
  square(): Tensor { return this.mul(this); }
  /** clamp(min?, max?); values exactly at a bound pass the gradient (PyTorch). */
  clamp(min?: number | null, max?: number | null): Tensor {
    if (min == null && max == null) throw new Error('clamp: at least one of min and max must be given');
    let y: Tensor = this;
    if (min != null) y = where(this.lt(min), min, y);
    if (max != null) y = where(this.gt(max), max, y);
    return y;
  }
  logicalNot(): Tensor { return this.eq(0); }
  logicalAnd(o: Tensor): Tensor { return where(this.ne(0), o.ne(0), false); }
  /** Zero where `mask` is true (a gradient-masking helper). */
  where0(mask: Tensor): Tensor { return where(mask, 0, this); }
  float(): Tensor { return this._cast('float32', 'float()'); }
  /** float64 (CPU only: WebGPU has no 64-bit floats) */
  double(): Tensor { return this._cast('float64', 'double()'); }
  int(): Tensor { return this._cast('int32', 'int()'); }
  bool(): Tensor { return this._cast('bool', 'bool()'); }
  /** The values as `dtype` (this tensor itself when it already is); gradients flow between float types. */
  private _cast(dtype: DType, op: string): Tensor {
    if (this.dtype === dtype) return this;
    checkDType(op, this.device, dtype);
    return dispatch('cast', [this], { dtype });
  }
  clone(): Tensor { return dispatch('copy', [this], {}); }
  contiguous(): Tensor { return contiguous(this); }

  // ---- reductions ----
  sum(dim?: Dims, keepdim = false): Tensor {
    const axes = normAxes('sum', dim, this.ndim);
    return renamed(dropAxes(dispatch('sum', [this], { axes }), axes, keepdim), 'SumBackward');
  }
  mean(dim?: Dims, keepdim = false): Tensor {
    const axes = normAxes('mean', dim, this.ndim);
    if (!isFloat(this.dtype)) throw new Error(`mean: expected a floating point input (float32, float64), got ${this.dtype}`);
    const count = axes.reduce((n, a) => n * this.shape[a], 1);
    return renamed(this.sum(axes, keepdim).div(count), 'MeanBackward');
  }
  max(dim?: Dims, keepdim = false): Tensor {
    const axes = normAxes('max', dim, this.ndim);
    checkNonEmptyReduction('max', this, axes);
    return renamed(dropAxes(dispatch('max', [this], { axes }), axes, keepdim), 'MaxBackward');
  }
  min(dim?: Dims, keepdim = false): Tensor {
    checkNonEmptyReduction('min', this, normAxes('min', dim, this.ndim));
    return renamed(this.neg().max(dim, keepdim).neg(), 'MinBackward');
  }
  argmax(dim?: number, keepdim = false): Tensor { return this._argmax('argmax', this, dim, keepdim); }
  argmin(dim?: number, keepdim = false): Tensor { return this._argmax('argmin', this.neg(), dim, keepdim); }
  private _argmax(op: string, x: Tensor, dim: number | undefined, keepdim: boolean): Tensor {
    if (dim === undefined) {
      if (x.numel() === 0) throw new Error(`${op}: cannot take the ${op} of an empty tensor (shape ${fmt(x.shape)}) without a dim`);
      return dispatch('argmax', [x.reshape([-1])], { axes: [0] }).reshape([]);
    }
    const axis = normDim(op, dim, x.ndim);
    if (x.ndim === 0) return full([], 0, { dtype: 'int32', device: x.device });
    checkNonEmptyReduction(op, x, [axis]);
    return dropAxes(dispatch('argmax', [x], { axes: [axis] }), [axis], keepdim);
  }
  logsumexp(dim: Dims, keepdim = false): Tensor {
    const axes = normAxes('logsumexp', dim, this.ndim);
    // Shift by the (detached) max for stability; an infinite max shifts by 0 instead.
    const m = this.max(axes, true).detach();
    const shift = where(m.abs().eq(Infinity), 0, m);
    const r = this.sub(shift).exp().sum(axes, true).log().add(shift);
    return dropAxes(r, axes, keepdim);
  }
  softmax(dim: number): Tensor {
    const d = normDim('softmax', dim, this.ndim);
    const e = this.sub(this.max(d, true).detach()).exp();
    return renamed(e.div(e.sum(d, true)), 'SoftmaxBackward');
  }
  logSoftmax(dim: number): Tensor {
    const d = normDim('logSoftmax', dim, this.ndim);
    // (x - max) - log(sum(exp(x - max))), as PyTorch, keeps precision for large inputs.
    const shifted = this.sub(this.max(d, true).detach());
    return renamed(shifted.sub(shifted.exp().sum(d, true).log()), 'LogSoftmaxBackward');
  }

  // ---- linear algebra ----
  matmul(o: Tensor): Tensor { return matmul(this, o); }
  mm(o: Tensor): Tensor {
    if (this.ndim !== 2 || o.ndim !== 2) throw new Error(`mm: expected 2-D tensors, got shapes ${fmt(this.shape)} and ${fmt(o.shape)}`);
    return matmul(this, o);
  }

  // ---- shape ----
  /** reshape([2, 3]) or, as PyTorch, reshape(2, 3) */
  reshape(shape: readonly number[] | number, ...more: number[]): Tensor {
    const s = inferShape('reshape', this.shape, typeof shape === 'number' ? [shape, ...more] : shape);
    return sameShape(s, this.shape) ? this : dispatch('reshape', [this], { shape: s });
  }
  /** reshape() that never copies: a layout it cannot view throws (PyTorch), naming reshape. */
  view(shape: readonly number[] | number, ...more: number[]): Tensor {
    const s = inferShape('view', this.shape, typeof shape === 'number' ? [shape, ...more] : shape);
    if (!reshapeView(this._view, s)) {
      throw new Error(`view: size and stride of this tensor (shape ${fmt(this.shape)}, strides ${fmt(this._view.strides)}) are not compatible with the view ${fmt(s)}: ` +
        'at least one dimension spans across two contiguous subspaces. Use .reshape(...) instead.');
    }
    return this.reshape(s);
  }
  flatten(startDim = 0, endDim = -1): Tensor {
    if (this.ndim === 0) return this.reshape([1]);
    const s = normDim('flatten', startDim, this.ndim), e = normDim('flatten', endDim, this.ndim);
    if (s > e) throw new Error(`flatten: startDim ${startDim} cannot come after endDim ${endDim}`);
    return this.reshape([...this.shape.slice(0, s), numel(this.shape.slice(s, e + 1)), ...this.shape.slice(e + 1)]);
  }
  squeeze(dim?: Dims): Tensor {
    const axes = dim === undefined ? this.shape.map((_, i) => i) : normAxes('squeeze', dim, this.ndim);
    return this.reshape(this.shape.filter((d, i) => !(d === 1 && axes.includes(i))));
  }
  unsqueeze(dim: number): Tensor {
    const d = normDim('unsqueeze', dim, this.ndim, 1);
    return this.reshape([...this.shape.slice(0, d), 1, ...this.shape.slice(d)]);
  }
  transpose(dim0: number, dim1: number): Tensor {
    const a = normDim('transpose', dim0, this.ndim), b = normDim('transpose', dim1, this.ndim);
    if (a === b) return this;
    const perm = this.shape.map((_, i) => i);
    [perm[a], perm[b]] = [perm[b], perm[a]];
    return dispatch('permute', [this], { perm });
  }
  permute(dims: readonly number[]): Tensor {
    if (dims.length !== this.ndim) throw new Error(`permute: expected ${this.ndim} dims for a tensor of shape ${fmt(this.shape)}, got ${fmt(dims)}`);
    const perm = dims.map((d) => normDim('permute', d, this.ndim));
    return perm.every((p, i) => p === i) ? this : dispatch('permute', [this], { perm });
  }
  expand(shape: readonly number[]): Tensor {
    const lead = shape.length - this.ndim;
    const s = shape.map((d, i) => (d === -1 ? (i < lead ? NaN : this.shape[i - lead]) : d));
    if (s.some((d) => Number.isNaN(d))) throw new Error(`expand: -1 is not allowed for a new leading dimension in ${fmt(shape)}`);
    return sameShape(s, this.shape) ? this : dispatch('expand', [this], { shape: s });
  }
  broadcastTo(shape: readonly number[]): Tensor { return this.expand(shape); }

  // ---- indexing ----
  index(...idx: (IndexEntry | Tensor)[]): Tensor {
    const first = idx[0];
    if (first instanceof Tensor) return this._indexByTensor(first, idx.slice(1));
    if (idx.some((e) => e instanceof Tensor)) throw new Error('index: an integer tensor is only supported as the first index (C.index(X), PyTorch\'s C[X])');
    return this._indexBasic(idx as IndexEntry[]);
  }
  /** `C.index(X, ...rest)`: rows of C picked by the int tensor X, shape [...X.shape, ...C.shape.slice(1)], then `rest` on the remaining dims. */
  private _indexByTensor(X: Tensor, rest: (IndexEntry | Tensor)[]): Tensor {
    if (this.ndim === 0) throw new Error(`index: cannot index a 0-d tensor with a tensor of shape ${fmt(X.shape)}`);
    if (X.dtype !== 'int32') throw new Error(`index: tensors used as indices must be int32, got ${X.dtype} (shape ${fmt(X.shape)})`);
    const picked = this.indexSelect(0, X.reshape([-1])).reshape([...X.shape, ...this.shape.slice(1)]);
    return rest.length === 0 ? picked : picked.index(...X.shape.map(() => null), ...rest);
  }
  private _indexBasic(idx: IndexEntry[]): Tensor {
    if (idx.length > this.ndim) throw new Error(`index: too many indices for tensor of dimension ${this.ndim} (got ${idx.length})`);
    const starts: number[] = [], steps: number[] = [], shape: number[] = [], keep: boolean[] = [];
    this.shape.forEach((size, d) => {
      const e = idx[d];
      if (typeof e === 'number') {
        if (!Number.isInteger(e) || e < -size || e >= size) throw new Error(`index: index ${e} is out of bounds for dimension ${d} with size ${size}`);
        starts.push(e < 0 ? e + size : e); steps.push(1); shape.push(1); keep.push(false);
        return;
      }
      const [s0, e0, st0] = e ?? [];
      const step = st0 ?? 1;
      if (!Number.isInteger(step) || step <= 0) throw new Error(`index: slice step must be a positive integer, got ${step} (dimension ${d})`);
      const clampI = (v: number) => Math.min(Math.max(v < 0 ? v + size : v, 0), size);
      const start = s0 == null ? 0 : clampI(s0), end = e0 == null ? size : clampI(e0);
      starts.push(start); steps.push(step); shape.push(Math.max(0, Math.ceil((end - start) / step))); keep.push(true);
    });
    const whole = starts.every((s, i) => s === 0 && steps[i] === 1 && shape[i] === this.shape[i]);
    const sliced = whole ? this : dispatch('slice', [this], { starts, steps, shape });
    return sliced.reshape(shape.filter((_, i) => keep[i]));
  }
  indexSelect(dim: number, indices: Tensor): Tensor {
    const d = normDim('indexSelect', dim, this.ndim);
    checkTensor('indexSelect', 'indices', indices);
    if (indices.dtype !== 'int32') throw new Error(`indexSelect: expected indices of dtype int32, got ${indices.dtype}`);
    if (indices.ndim > 1) throw new Error(`indexSelect: indices must be 0-D or 1-D, got shape ${fmt(indices.shape)}`);
    checkIndexRange('indexSelect', indices, this.shape[d], d);
    const n = indices.numel();
    const outShape = this.shape.map((s, i) => (i === d ? n : s));
    const idx = indices.reshape(this.shape.map((_, i) => (i === d ? n : 1))).expand(outShape);
    return dispatch('gather', [this, idx], { axis: d });
  }
  gather(dim: number, index: Tensor): Tensor {
    const d = normDim('gather', dim, this.ndim);
    checkTensor('gather', 'index', index);
    if (index.dtype !== 'int32') throw new Error(`gather: expected index of dtype int32, got ${index.dtype}`);
    if (index.ndim !== this.ndim) throw new Error(`gather: index ${fmt(index.shape)} must have as many dimensions as input ${fmt(this.shape)}`);
    index.shape.forEach((s, i) => {
      if (i !== d && s > this.shape[i]) throw new Error(`gather: index ${fmt(index.shape)} is larger than input ${fmt(this.shape)} in dimension ${i}`);
    });
    checkIndexRange('gather', index, this.shape[d], d);
    const src = index.shape.every((s, i) => i === d || s === this.shape[i]) ? this
      : dispatch('slice', [this], { starts: this.shape.map(() => 0), steps: this.shape.map(() => 1), shape: this.shape.map((s, i) => (i === d ? s : index.shape[i])) });
    return dispatch('gather', [src, index], { axis: d });
  }

  // ---- beyond the MLP (API.md "Beyond the MLP"): composites of the primitives above ----
  /** The error function (a primitive: a Taylor series near 0, else Numerical Recipes' erfc; relative error ~1e-7; exact gradient). */
  erf(): Tensor { return dispatch('erf', [this], {}); }
  /**
   * log(1 + x), accurate for small x: log(u) · x / (u − 1) with u = 1 + x (Goldberg's correction; the
   * factor x / (u − 1) is ≈ 1 and held constant for the gradient, which is then 1 / (1 + x)).
   */
  log1p(): Tensor {
    const u = this.add(1);
    const exact = u.eq(1);
    const c = noGrad(() => where(exact, 1, this.div(where(exact, 1, u.sub(1)))));
    return where(exact, this, u.log().mul(c));
  }
  reciprocal(): Tensor { return scalar(1, this).div(this); }
  /** Lower triangle of the last two dims: keeps elements with column − row <= k. */
  tril(k = 0): Tensor { return this._triangle('tril', k, true); }
  /** Upper triangle of the last two dims: keeps elements with column − row >= k. */
  triu(k = 0): Tensor { return this._triangle('triu', k, false); }
  private _triangle(op: string, k: number, lower: boolean): Tensor {
    if (this.ndim < 2) throw new Error(`${op}: expected a tensor with at least 2 dimensions, got shape ${fmt(this.shape)}`);
    if (!Number.isInteger(k)) throw new Error(`${op}: diagonal k must be an integer, got ${k}`);
    const [r, c] = this.shape.slice(-2);
    const diff = indexGrid(c, this.device).reshape([1, c]).sub(indexGrid(r, this.device).reshape([r, 1]));
    const keep = lower ? diff.le(k) : diff.ge(k);
    return where(keep, this, this.dtype === 'bool' ? false : 0);
  }
  /** `value` where `mask` (bool, broadcast to this shape) is true, this tensor elsewhere. */
  maskedFill(mask: Tensor, value: number | Tensor): Tensor {
    if (!(mask instanceof Tensor) || mask.dtype !== 'bool') throw new Error(`maskedFill: expected a bool mask tensor, got ${mask instanceof Tensor ? mask.dtype : typeof mask}`);
    broadcastShapes('maskedFill', this.shape, mask.shape);
    if (mask.ndim > this.ndim || mask.shape.some((d, i) => d !== 1 && d !== this.shape[this.ndim - mask.ndim + i])) {
      throw new Error(`maskedFill: the mask of shape ${fmt(mask.shape)} cannot be broadcast to the input's shape ${fmt(this.shape)}`);
    }
    if (value instanceof Tensor && value.ndim !== 0) throw new Error(`maskedFill: value must be a number or a 0-d tensor, got shape ${fmt(value.shape)}`);
    return where(expandTo('maskedFill', mask, this.shape), value instanceof Tensor ? value.expand(this.shape) : value, this);
  }
  /** Variance over `dim` (all dims by default), divided by N − correction. */
  var(dim?: Dims, opts: VarOptions = {}): Tensor {
    const axes = normAxes('var', dim, this.ndim);
    if (!isFloat(this.dtype)) throw new Error(`var: expected a floating point input (float32, float64), got ${this.dtype}`);
    const correction = opts.correction ?? 1;
    const n = axes.reduce((k, a) => k * this.shape[a], 1);
    const d = this.sub(this.mean(axes, true));
    return d.mul(d).sum(axes, opts.keepdim ?? false).div(Math.max(0, n - correction));
  }
  std(dim?: Dims, opts: VarOptions = {}): Tensor { return this.var(dim, opts).sqrt(); }
  /** Running sums along `dim` (a product with a triangular matrix of ones, so it runs as one matmul). */
  cumsum(dim: number): Tensor {
    const d = normDim('cumsum', dim, this.ndim);
    if (this.ndim === 0) return this.clone();
    const n = this.shape[d];
    const upper = indexGrid(n, this.device).reshape([n, 1]).le(indexGrid(n, this.device).reshape([1, n])).float();
    const moved = this.transpose(d, -1);
    const r = (isFloat(this.dtype) ? moved : moved.float()).matmul(upper).transpose(d, -1);
    return isFloat(this.dtype) ? r : r.int();
  }
  /** Views of consecutive parts along `dim`: of `size` each (the last may be smaller), or of the given sizes. */
  split(sizeOrSizes: number | readonly number[], dim = 0): Tensor[] {
    const d = normDim('split', dim, this.ndim);
    const n = this.shape[d];
    let sizes: number[];
    if (typeof sizeOrSizes === 'number') {
      if (!Number.isInteger(sizeOrSizes) || sizeOrSizes <= 0) throw new Error(`split: split size must be a positive integer, got ${sizeOrSizes}`);
      sizes = [];
      for (let s = 0; s < n; s += sizeOrSizes) sizes.push(Math.min(sizeOrSizes, n - s));
      if (n === 0) sizes.push(0);
    } else {
      sizes = [...sizeOrSizes];
      if (sizes.some((s) => !Number.isInteger(s) || s < 0) || sizes.reduce((a, b) => a + b, 0) !== n) {
        throw new Error(`split: sizes ${fmt(sizes)} must be non-negative integers summing to ${n}, the size of dimension ${d} of ${fmt(this.shape)}`);
      }
    }
    let start = 0;
    return sizes.map((s) => {
      const entries: IndexEntry[] = this.shape.map(() => null);
      entries[d] = [start, start + s];
      start += s;
      return this.index(...entries);
    });
  }
  /** `n` parts along `dim` of ceil(size / n) each (fewer when the size is small, as PyTorch). */
  chunk(n: number, dim = 0): Tensor[] {
    if (!Number.isInteger(n) || n <= 0) throw new Error(`chunk: number of chunks must be a positive integer, got ${n}`);
    const size = this.shape[normDim('chunk', dim, this.ndim)];
    return this.split(Math.max(1, Math.ceil(size / n)), dim);
  }
  /** Tiles the tensor: `sizes[i]` copies along dim i (leading extra sizes add dimensions). */
  repeat(sizes: readonly number[]): Tensor {
    if (sizes.length < this.ndim) throw new Error(`repeat: number of repeat dims ${sizes.length} can not be smaller than number of tensor dims ${this.ndim} (shape ${fmt(this.shape)})`);
    if (sizes.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`repeat: repeats must be non-negative integers, got ${fmt(sizes)}`);
    const shape = [...sizes.slice(0, sizes.length - this.ndim).map(() => 1), ...this.shape];
    // [s0, s1] -> [1, s0, 1, s1] -> expand [r0, s0, r1, s1] -> [r0*s0, r1*s1]
    const inter = shape.flatMap((s) => [1, s]);
    const expanded = this.reshape(inter).expand(shape.flatMap((s, i) => [sizes[i], s]));
    return expanded.reshape(shape.map((s, i) => s * sizes[i]));
  }
  viewAs(other: Tensor): Tensor { return this.reshape(other.shape); }
  /**
   * The k largest (or smallest) values along `dim` and their indices, largest first: k rounds of
   * argmax, each masking out the winner (ties go to the lowest index, as PyTorch on the CPU).
   */
  topk(k: number, dim = -1, largest = true): TopK {
    const d = normDim('topk', dim, this.ndim);
    const n = this.ndim === 0 ? 1 : this.shape[d];
    if (!Number.isInteger(k) || k < 0 || k > n) throw new Error(`topk: k (${k}) is out of range for dimension ${d} of size ${n} (shape ${fmt(this.shape)})`);
    if (this.dtype === 'bool') throw new Error('topk: expected a float32 or int32 input, got bool');
    const x = this.ndim === 0 ? this.reshape([1]) : this;
    let cur = noGrad(() => (largest ? x : x.neg()).float());
    const positions = indexGrid(n, this.device).reshape(x.shape.map((s, i) => (i === d ? n : 1)));
    const values: Tensor[] = [], indices: Tensor[] = [];
    for (let i = 0; i < k; i++) {
      const idx = cur.argmax(d, true);
      indices.push(idx);
      values.push(x.gather(d, idx));
      if (i + 1 < k) cur = noGrad(() => cur.maskedFill(positions.eq(idx), -Infinity));
    }
    const empty = x.shape.map((s, i) => (i === d ? 0 : s));
    const [v, ix] = k === 0 ? [full(empty, 0, { dtype: this.dtype, device: this.device }), full(empty, 0, { dtype: 'int32', device: this.device })]
      : [cat(values, d), cat(indices, d)];
    return this.ndim === 0 ? new TopK(v.reshape([]), ix.reshape([])) : new TopK(v, ix);
  }

  // ---- in place ----
  private _inplace(op: string, value: Tensor): this {
    if (!sameShape(value.shape, this.shape)) {
      throw new Error(`${op}: output with shape ${fmt(this.shape)} doesn't match the broadcast shape ${fmt(value.shape)}`);
    }
    let v = value.dtype === this.dtype ? value : noGrad(() => dispatch('cast', [value], { dtype: this.dtype }));
    // Under grad mode the tensor takes over the history of its new value (PyTorch rebases it).
    const tracked = isGradEnabled() && v._requiresGrad;
    if (tracked && !v._ctx) v = v.clone();
    writeInto(this, v);
    if (tracked) this._setGradNode(v._ctx!);
    this._version++;
    return this;
  }
  private _checkInplace(op: string): void {
    if (!isGradEnabled()) return;
    if (this.isLeaf && this._requiresGrad) {
      throw new Error(`${op}: a leaf tensor that requires grad is being used in an in-place operation (wrap the update in kiln.noGrad(() => ...))`);
    }
    const base = this._base;
    if (base && base.isLeaf && base._requiresGrad) {
      throw new Error(`${op}: a view (shape ${fmt(this.shape)}) of a leaf tensor that requires grad (shape ${fmt(base.shape)}) is being used in an in-place operation (wrap the update in kiln.noGrad(() => ...))`);
    }
  }
  add_(o: TensorLike): this { this._checkInplace('add_'); return this._inplace('add_', this.add(o)); }
  sub_(o: TensorLike): this { this._checkInplace('sub_'); return this._inplace('sub_', this.sub(o)); }
  mul_(o: TensorLike): this { this._checkInplace('mul_'); return this._inplace('mul_', this.mul(o)); }
  div_(o: TensorLike): this { this._checkInplace('div_'); return this._inplace('div_', this.div(o)); }
  clamp_(min?: number | null, max?: number | null): this { this._checkInplace('clamp_'); return this._inplace('clamp_', this.clamp(min, max)); }
  fill_(value: number | Tensor): this { return this._fill('fill_', value); }
  zero_(): this { return this._fill('zero_', 0); }
  private _fill(op: string, value: number | Tensor): this {
    this._checkInplace(op);
    if (!(value instanceof Tensor) && typeof value !== 'number' && typeof value !== 'boolean') throw new Error(`${op}: expected a number or a one-element Tensor, got ${describe(value)}`);
    const v = value instanceof Tensor ? value : scalar(value, this);
    if (v.numel() !== 1) throw new Error(`${op}: expected a one-element value, got shape ${fmt(v.shape)}`);
    return this._inplace(op, v.reshape([]).expand(this.shape));
  }
  copy_(src: Tensor): this {
    checkTensor('copy_', 'src', src);
    this._checkInplace('copy_');
    const s = src.device === this.device ? src : src.to(this.device);
    // A source that is another view of the same memory would be read while it is written (PyTorch raises).
    const sameMemory = s._storage !== null ? s._storage === this._storage : (s._base ?? s) === (this._base ?? this) || s._sym === this._sym;
    const v = s._view, w = this._view;
    // (as PyTorch: memory ranges that intersect without being the same view)
    const span = (x: View): [number, number] => [x.offset, x.offset + x.shape.reduce((n, d, i) => n + (d - 1) * Math.abs(x.strides[i]), 0)];
    const [a0, a1] = span(v), [b0, b1] = span(w);
    const identical = v.offset === w.offset && sameShape(v.shape, w.shape) && sameShape(v.strides, w.strides);
    if (sameMemory && !identical && this.numel() > 0 && a0 <= b1 && b0 <= a1) {
      throw new Error('copy_: unsupported operation: some elements of the input tensor and the written-to tensor refer to a single memory location. ' +
        'Please clone() the tensor before performing the operation.');
    }
    return this._inplace('copy_', expandTo('copy_', s, this.shape));
  }

  // ---- devices and dtypes ----
  /** `to(device)` moves to a device; `to(dtype)` casts (as `float()`, `double()`, `int()`, `bool()`). */
  to(target: DeviceName | DType): Tensor {
    if (isDType(target)) return this._cast(target, `to('${target}')`);
    const device = checkDevice(target);
    if (device === this.device) return this;
    checkDType(`to('${device}')`, device, this.dtype);
    this._readable('to()');
    const host = backendFor(this.device).readSync(noGrad(() => contiguous(this))._storage!, 0, this.numel(), 'toAsync()');
    const t = Tensor._fromStorage(uploaded(device, host, this.dtype), contiguousView(this.shape), this.dtype);
    t._requiresGrad = this._requiresGrad && this.isLeaf;
    return t;
  }
  /** Moves to another device, waiting for the device if needed (works from webgpu to cpu). */
  async toAsync(device: DeviceName): Promise<Tensor> {
    if (device === this.device) return this;
    checkDType(`toAsync('${device}')`, device, this.dtype);
    const t = Tensor._fromStorage(uploaded(device, await this.data(), this.dtype), contiguousView(this.shape), this.dtype);
    t._requiresGrad = this._requiresGrad && this.isLeaf;
    return t;
  }
  cpu(): Tensor { return this.to('cpu'); }

  /** Registers `t` (optimizer state) to move whenever this tensor moves in place: users move the model, not the optimizer. */
  _addFollower(t: Tensor): void { (this._followers ??= []).push(t); }
  private _followers: Tensor[] | null = null;
  /**
   * Moves this tensor's storage and its .grad to `device` in place, keeping the same object, so that
   * whoever holds it (a module, an optimizer) still does: Module.to. `who` names the caller in errors.
   */
  _moveTo(device: DeviceName, who: string): void {
    for (const f of this._followers ?? []) f._moveTo(device, who);
    if (this.device !== device) {
      if (this._storage === null) throw new Error(`${who}: cannot move a symbolic (traced) tensor to '${device}'; move it before compiling`);
      this._adopt(noGrad(() => this.to(device)));
    }
    const g = this.grad;
    if (g && g.device !== device) this.grad = noGrad(() => g.to(device));
  }
  /** _moveTo that can also move from WebGPU to the CPU (reading a GPU buffer is asynchronous). */
  async _moveToAsync(device: DeviceName): Promise<void> {
    for (const f of this._followers ?? []) await f._moveToAsync(device);
    if (this.device !== device) this._adopt(await this.toAsync(device));
    const g = this.grad;
    if (g && g.device !== device) this.grad = await g.toAsync(device);
  }
  /**
   * Converts this tensor's values and its .grad to `dtype` in place, keeping the same object (as _moveTo
   * does for devices): Module.double / Module.float. `who` names the caller in errors.
   */
  _castTo(dtype: DType, who: string): void {
    if (this.dtype !== dtype) {
      if (this._storage === null) throw new Error(`${who}: cannot convert a symbolic (traced) tensor to ${dtype}; convert it before compiling`);
      checkDType(who, this.device, dtype);
      this._adopt(noGrad(() => this._cast(dtype, who)));
    }
    const g = this.grad;
    if (g && g.dtype !== dtype) this.grad = noGrad(() => g._cast(dtype, who));
  }
  /** Takes over `moved`'s storage, view, device and dtype (a new version: views of the old storage are stale). */
  private _adopt(moved: Tensor): void {
    this._storage = moved._storage;
    this._view = moved._view;
    (this as { device: DeviceName }).device = moved.device;
    (this as { dtype: DType }).dtype = moved.dtype;
    this._version++;
  }
}

// ---- helpers used by the methods above ----

export type NestedArray = number | boolean | NestedArray[];

function nest(data: TypedArray, shape: readonly number[], dtype: DType): NestedArray {
  const conv = (v: number): number | boolean => (dtype === 'bool' ? v !== 0 : v);
  if (shape.length === 0) return conv(data[0]);
  const rec = (off: number, d: number): NestedArray[] => {
    const n = shape[d], inner = numel(shape.slice(d + 1));
    return Array.from({ length: n }, (_, i) => (d === shape.length - 1 ? conv(data[off + i]) : rec(off + i * inner, d + 1)));
  };
  return rec(0, 0);
}

function formatValues(data: TypedArray, shape: readonly number[], dtype: DType): string {
  const vals = Array.from(data, Number);
  const integral = vals.every((v) => Number.isInteger(v) || !Number.isFinite(v));
  const fmtOne = (v: number): string => {
    if (dtype === 'bool') return v ? 'True' : 'False';
    if (dtype === 'int32') return String(v);
    if (!Number.isFinite(v)) return Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf';
    return integral ? `${v}.` : v.toFixed(4);
  };
  const strs = vals.map(fmtOne);
  const width = Math.max(0, ...strs.map((s) => s.length));
  const pad = (s: string) => s.padStart(width);
  if (shape.length === 0) return strs[0];
  const rec = (off: number, d: number, indent: number): string => {
    const n = shape[d], inner = numel(shape.slice(d + 1));
    if (d === shape.length - 1) return `[${Array.from({ length: n }, (_, i) => pad(strs[off + i])).join(', ')}]`;
    const sep = ',' + '\n'.repeat(shape.length - 1 - d) + ' '.repeat(indent + 1);
    return `[${Array.from({ length: n }, (_, i) => rec(off + i * inner, d + 1, indent + 1)).join(sep)}]`;
  };
  return rec(0, 0, 'tensor('.length);
}

function renamed(t: Tensor, name: string): Tensor {
  if (t._ctx) (t._ctx as { name: string }).name = name;
  return t;
}

function dropAxes(t: Tensor, axes: readonly number[], keepdim: boolean): Tensor {
  return keepdim ? t : t.reshape(t.shape.filter((_, i) => !axes.includes(i)));
}

/**
 * A 0-d constant for a number operand (PyTorch: a Python number never widens a tensor): the tensor's
 * own type next to a float tensor, int32 for integers next to int tensors, else float32.
 */
export function scalar(v: number | boolean, like: Tensor): Tensor {
  const n = Number(v);
  const dtype: DType = typeof v === 'boolean' ? 'bool' : isFloat(like.dtype) ? like.dtype : !Number.isInteger(n) ? 'float32' : 'int32';
  if (activeTracer()) return full([], n, { dtype, device: like.device }); // a constant node of the graph
  // Eagerly, operand constants are read-only internal tensors: keep the recent ones instead of
  // allocating and filling one for every `x.mul(2)`.
  // Keyed by the device's description (Backend.target: a new object for each acquired device), not its
  // name: after webgpu.destroy() and init() the name is the same, but the old constants' buffers belong
  // to the destroyed GPUDevice.
  const device = backendFor(like.device).target;
  let cache = scalarCaches.get(device);
  if (!cache) scalarCaches.set(device, (cache = new Map()));
  const key = `${dtype}|${Object.is(n, -0) ? '-0' : n}`;
  let t = cache.get(key);
  if (!t) {
    if (cache.size >= 1024) cache.clear();
    t = full([], n, { dtype, device: like.device });
    cache.set(key, t);
  }
  return t;
}
const scalarCaches = new WeakMap<object, Map<string, Tensor>>();

export function expandTo(op: string, t: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(t.shape, shape)) return t;
  broadcastShapes(op, t.shape, shape);
  if (t.ndim > shape.length || t.shape.some((d, i) => d !== 1 && d !== shape[shape.length - t.ndim + i])) {
    throw new Error(`${op}: the shape ${fmt(t.shape)} cannot be broadcast to ${fmt(shape)}`);
  }
  return dispatch('expand', [t], { shape: [...shape] });
}

/** What a bad argument is, for error messages. */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string '${v}'`;
  return typeof v === 'object' ? `an object (${(v as object).constructor?.name ?? 'Object'})` : typeof v;
}

/** An argument that must be a Tensor (ops here, nn's functions), or an Error naming `op` and `what` it got. */
export function checkTensor(op: string, what: string, v: unknown): asserts v is Tensor {
  if (!(v instanceof Tensor)) throw new Error(`${op}: expected ${what} to be a Tensor, got ${describe(v)}`);
}

function checkOperand(op: string, v: unknown): asserts v is TensorLike {
  if (!(v instanceof Tensor) && typeof v !== 'number' && typeof v !== 'boolean') {
    throw new Error(`${op}: expected a Tensor, a number or a boolean as operand, got ${describe(v)}`);
  }
}

/** Reducing over an empty extent has no identity for max/argmax (PyTorch raises). */
function checkNonEmptyReduction(op: string, x: Tensor, axes: readonly number[]): void {
  const empty = x.ndim === 0 ? false : axes.some((a) => x.shape[a] === 0);
  if (empty) throw new Error(`${op}: cannot reduce over a dimension of size 0 (input shape ${fmt(x.shape)}, dims ${fmt(axes)}); PyTorch raises as well`);
}

function binary(prim: Primitive, a: Tensor, b: TensorLike): Tensor {
  checkOperand(prim, b);
  const bt = b instanceof Tensor ? b : scalar(b, a);
  const shape = broadcastShapes(prim, a.shape, bt.shape);
  return dispatch(prim, [expandTo(prim, a, shape), expandTo(prim, bt, shape)], {} as PrimAttrs[typeof prim]);
}

/**
 * `[0, 1, ..., n-1]` as int32 on a device: a read-only constant (tril masks, cumsum, topk), uploaded
 * once and captured by reference while tracing.
 */
const gridCache = new Map<string, Tensor>();
export function indexGrid(n: number, device: DeviceName): Tensor {
  const key = `${device}|${n}`;
  let t = gridCache.get(key);
  if (!t) {
    const data = new Int32Array(n);
    for (let i = 0; i < n; i++) data[i] = i;
    t = Tensor._fromStorage(uploaded(device, data, 'int32'), contiguousView([n]), 'int32');
    if (gridCache.size >= 256) gridCache.clear();
    gridCache.set(key, t);
  }
  return t;
}

/**
 * What is known on the host about int32 storages whose values came from the host (uploads): the
 * largest value and the distinct negative ones (up to 4; null: more), so that indices on WebGPU are
 * checked without reading the device. A write into the storage forgets it.
 */
const knownValues = new WeakMap<Storage, { max: number; negatives: number[] | null }>();
export function noteValues(storage: Storage, data: ArrayLike<number>): void {
  let max = -Infinity;
  let negatives: number[] | null = [];
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v > max) max = v;
    if (v < 0 && negatives && !negatives.includes(v)) negatives = negatives.length < 4 ? [...negatives, v] : null;
  }
  knownValues.set(storage, { max, negatives });
}
export const forgetValues = (storage: Storage): void => { knownValues.delete(storage); };

/** Host data uploaded to `device` (int32 values noted, for index checks). */
export function uploaded(device: DeviceName, data: TypedArray, dtype: DType): Storage {
  const storage = backendFor(device).upload(data);
  if (dtype === 'int32') noteValues(storage, data);
  return storage;
}

/**
 * An index value of concrete `t` outside [0, size) other than `allowed` (e.g. an ignoreIndex), or null:
 * read on the CPU, host-known on WebGPU (null when nothing is known: computed on the device).
 */
export function badIndex(t: Tensor, size: number, allowed?: number): number | null {
  if (t._storage === null) return null;
  if (t.device === 'cpu') {
    for (const v of t.dataSync()) if ((v < 0 || v >= size) && v !== allowed) return v;
    return null;
  }
  const k = knownValues.get(t._storage);
  if (!k) return null;
  if (k.max >= size) return k.max;
  if (k.negatives === null) return -1;
  return k.negatives.find((v) => v !== allowed) ?? null;
}

/**
 * Index values must lie in [0, size) (or equal `allowed`): checked now for concrete tensors, and
 * inside `compile` on every call for indices that are arguments or captured tensors (the tracer
 * registers the check). Indices computed on WebGPU (never read back) are not checked. `says(bad)` is
 * the error's text (default: the index, the dim and its size).
 */
export function checkIndexRange(op: string, index: Tensor, size: number, dim: number, allowed?: number,
  says = (bad: number): string => `${op}: index ${bad} is out of bounds for dimension ${dim} with size ${size}`): void {
  const check = (t: Tensor): string | null => {
    const bad = badIndex(t, size, allowed);
    return bad === null ? null : says(bad);
  };
  if (index._storage === null) {
    activeTracer()?.rangeCheck?.(index, check);
    return;
  }
  const msg = check(index);
  if (msg) throw new Error(msg);
}

export function matmul(a: Tensor, b: Tensor): Tensor {
  checkTensor('matmul', 'the first operand', a);
  checkTensor('matmul', 'the second operand', b);
  if (a.ndim === 0 || b.ndim === 0) throw new Error(`matmul: both arguments need at least 1 dimension, got shapes ${fmt(a.shape)} and ${fmt(b.shape)}`);
  const ka = a.shape[a.ndim - 1], kb = b.shape[b.ndim === 1 ? 0 : b.ndim - 2];
  if (ka !== kb) throw new Error(`matmul: shapes ${fmt(a.shape)} and ${fmt(b.shape)} cannot be multiplied (${ka} != ${kb})`);
  const a2 = a.ndim === 1 ? a.unsqueeze(0) : a;
  const b2 = b.ndim === 1 ? b.unsqueeze(-1) : b;
  const batch = broadcastShapes('matmul', a2.shape.slice(0, -2), b2.shape.slice(0, -2));
  const ae = expandTo('matmul', a2, [...batch, ...a2.shape.slice(-2)]);
  const be = expandTo('matmul', b2, [...batch, ...b2.shape.slice(-2)]);
  let out = dispatch('matmul', [ae, be], {});
  if (a.ndim === 1) out = out.squeeze(-2);
  if (b.ndim === 1) out = out.squeeze(-1);
  return out;
}

export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  checkTensor('where', 'the condition', cond);
  checkOperand('where', a);
  checkOperand('where', b);
  if (cond.dtype !== 'bool') throw new Error(`where: expected condition of dtype bool, got ${cond.dtype}`);
  const like = a instanceof Tensor ? a : b instanceof Tensor ? b : cond;
  const ta = a instanceof Tensor ? a : scalar(a, like.dtype === 'bool' ? full([], 0, { device: cond.device }) : like);
  const tb = b instanceof Tensor ? b : scalar(b, ta);
  const shape = broadcastShapes('where', cond.shape, ta.shape, tb.shape);
  return dispatch('where', [expandTo('where', cond, shape), expandTo('where', ta, shape), expandTo('where', tb, shape)], {});
}

/** A list of tensors for cat/stack, checked element by element. */
function checkTensorList(op: string, tensors: unknown): asserts tensors is readonly Tensor[] {
  if (!Array.isArray(tensors)) throw new Error(`${op}: expected an array of Tensors, got ${describe(tensors)}`);
  if (tensors.length === 0) throw new Error(`${op}: expected a non-empty list of tensors`);
  tensors.forEach((t, i) => { if (!(t instanceof Tensor)) throw new Error(`${op}: expected a list of Tensors, but element ${i} is ${describe(t)}`); });
}

export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  checkTensorList('cat', tensors);
  const first = tensors[0];
  const d = normDim('cat', dim, first.ndim);
  for (const t of tensors) {
    if (t.ndim !== first.ndim || t.shape.some((s, i) => i !== d && s !== first.shape[i])) {
      throw new Error(`cat: sizes of tensors must match except in dimension ${d}: got ${fmt(first.shape)} and ${fmt(t.shape)}`);
    }
  }
  if (tensors.length === 1) return first;
  const total = tensors.reduce((n, t) => n + t.shape[d], 0);
  const shape = first.shape.map((s, i) => (i === d ? total : s));
  let offset = 0;
  let out: Tensor | null = null;
  for (const t of tensors) {
    const padded = dispatch('pad', [t], { starts: shape.map((_, i) => (i === d ? offset : 0)), steps: shape.map(() => 1), shape });
    offset += t.shape[d];
    out = out ? out.add(padded) : padded;
  }
  return renamed(out!, 'CatBackward');
}

export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  checkTensorList('stack', tensors);
  const d = normDim('stack', dim, tensors[0].ndim, 1);
  for (const t of tensors) {
    if (!sameShape(t.shape, tensors[0].shape)) throw new Error(`stack: expects each tensor to be equal size, but got ${fmt(tensors[0].shape)} and ${fmt(t.shape)}`);
  }
  return renamed(cat(tensors.map((t) => t.unsqueeze(d)), d), 'StackBackward');
}

export interface CreationOptions { dtype?: DType; device?: DeviceName; requiresGrad?: boolean }

/** Creates a filled tensor (through the dispatcher, so tracing records a constant). */
export function full(shape: readonly number[], value: number | boolean, opts: CreationOptions = {}): Tensor {
  const dtype = checkDTypeName('full', opts.dtype ?? (typeof value === 'boolean' ? 'bool' : 'float32'));
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`full: invalid shape ${fmt(shape)}`);
  const t = noGrad(() => dispatch('full', [], { shape: [...shape], value: Number(value), dtype }, checkDevice(opts.device ?? getDefaultDevice())));
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export type NestedData = number | boolean | readonly NestedData[];
export interface TensorOptions extends CreationOptions { shape?: readonly number[] }

/** A number stored as int32: PyTorch refuses values that do not fit instead of wrapping them. */
function toInt32(op: string, v: number): number {
  const n = Math.trunc(v);
  if (!(n >= -2147483648 && n <= 2147483647)) throw new Error(`${op}: value ${v} cannot be converted to type int32 without overflow`);
  return n;
}

/** A tensor holding `data` (converted to `opts.dtype` where that differs); `op` names the creator in errors. */
export function fromTyped(op: string, data: TypedArray, shape: readonly number[], opts: CreationOptions): Tensor {
  const device = checkDevice(opts.device ?? getDefaultDevice());
  const dtype = checkDTypeName(op, opts.dtype ?? dtypeOfArray(data));
  checkDType(op, device, dtype);
  let arr = data;
  if (dtype !== dtypeOfArray(data)) {
    arr = typedArrayFor(dtype, data.length);
    for (let i = 0; i < data.length; i++) arr[i] = dtype === 'bool' ? (data[i] !== 0 ? 1 : 0) : dtype === 'int32' ? toInt32(op, data[i]) : data[i];
  }
  const t = Tensor._fromStorage(uploaded(device, arr, dtype), contiguousView(shape), dtype);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** `tensor(data, opts?)`: numbers, nested arrays, booleans, or a typed array with `opts.shape`. */
export function tensor(data: NestedData | TypedArray, opts: TensorOptions = {}): Tensor {
  if (ArrayBuffer.isView(data)) {
    const typed = data as TypedArray;
    const shape = opts.shape ?? [typed.length];
    if (numel(shape) !== typed.length) throw new Error(`tensor: shape ${fmt(shape)} does not match ${typed.length} elements`);
    // Copy so later writes to the caller's array don't alias the tensor.
    return fromTyped('tensor', typed.slice(), shape, opts);
  }
  const shape: number[] = [];
  for (let d: NestedData = data; Array.isArray(d); d = (d as readonly NestedData[])[0]) shape.push((d as readonly NestedData[]).length);
  const flat: (number | boolean)[] = [];
  const walk = (d: NestedData, depth: number): void => {
    if (Array.isArray(d)) {
      if (depth >= shape.length || d.length !== shape[depth]) throw new Error(`tensor: nested arrays are ragged (expected length ${shape[depth]} at depth ${depth}, got ${d.length})`);
      for (const x of d as readonly NestedData[]) walk(x, depth + 1);
    } else {
      if (depth !== shape.length) throw new Error(`tensor: nested arrays are ragged at depth ${depth}`);
      if (typeof d !== 'number' && typeof d !== 'boolean') throw new Error(`tensor: expected numbers or booleans, got ${typeof d}`);
      flat.push(d);
    }
  };
  walk(data, 0);
  if (opts.shape && numel(opts.shape) !== flat.length) throw new Error(`tensor: shape ${fmt(opts.shape)} does not match ${flat.length} elements`);
  const dtype: DType = checkDTypeName('tensor', opts.dtype ?? (flat.length > 0 && flat.every((v) => typeof v === 'boolean') ? 'bool' : 'float32'));
  const arr = typedArrayFor(dtype, flat.length);
  flat.forEach((v, i) => (arr[i] = dtype === 'int32' ? toInt32('tensor', Number(v)) : Number(v)));
  return fromTyped('tensor', arr, opts.shape ?? shape, { ...opts, dtype });
}
