// The differential fuzzer's programs: a seeded generator of random training-step programs over
// kiln's public API, a printer that writes one as runnable TypeScript, and an interpreter that runs
// one against kiln. A program is data (initial tensors, then statements over numbered values), so
// the shrinker can delete parts of it and the printer can show exactly what failed.

import * as kiln from '../../index.ts';

type Tensor = kiln.Tensor;
export type DType = 'float32' | 'int32' | 'bool';
export type Device = 'cpu' | 'webgpu';

/** What the generator knows about a value: enough to pick valid operations on it. */
export interface ValInfo {
  shape: number[];
  dtype: DType;
  /** the parameters (init indices) a gradient from this value reaches */
  grads: number[];
  /** true when the value may alias memory with stride 0 (an expand): never written in place */
  expanded: boolean;
}

/** A tensor that exists before the step: an argument, a captured parameter or buffer, or an index. */
export interface Init {
  /** the value number the init is known by */
  id: number;
  role: 'arg' | 'param' | 'buffer' | 'index';
  shape: number[];
  dtype: DType;
  data: number[];
  /** an argument that requires grad */
  requiresGrad?: boolean;
}

/** One statement: `op` over the values `refs` with literal settings `lit`; `out` when it makes a value. */
export interface Stmt {
  /** the value number of `out` (-1 when the statement makes none) */
  id: number;
  op: string;
  refs: number[];
  lit: Lit;
  out: ValInfo | null;
}
export type Lit = Record<string, unknown>;

export interface OptimizerSpec { kind: 'SGD' | 'Adam'; lr: number; momentum: number }

/**
 * Adam's step is scale-invariant: with eps 1e-8 a gradient that is 0 eagerly and 1e-9 compiled (float32
 * rounding in a different order) moves a parameter by ±lr. A larger eps keeps such noise below tolerance.
 */
const ADAM_EPS = 1e-3;

export interface Program {
  inits: Init[];
  stmts: Stmt[];
  /** values returned by the step */
  returns: number[];
  optimizer: OptimizerSpec | null;
  /** how many times the step is called */
  calls: number;
}

// ---- seeded random numbers ----

export class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0 || 1; }
  next(): number {
    // mulberry32
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number { return lo + Math.floor(this.next() * (hi - lo + 1)); }
  pick<T>(xs: readonly T[]): T { return xs[Math.floor(this.next() * xs.length)]; }
  chance(p: number): boolean { return this.next() < p; }
}

const numelOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

// ---- the operations ----

/** How an op is printed and run; `refs` print as `v<i>`. */
interface OpDef {
  emit(r: string[], lit: Lit): string;
  run(v: Tensor[], lit: Lit, ctx: RunContext): Tensor | void;
}

interface RunContext { opt: kiln.optim.SGD | kiln.optim.Adam | null; params: Tensor[] }

const UNARY = ['neg', 'abs', 'exp', 'sin', 'cos', 'tanh', 'sigmoid', 'relu'] as const;
const BINARY = ['add', 'sub', 'mul', 'maximum', 'minimum'] as const;
const COMPARE = ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const;
const REDUCE = ['sum', 'mean', 'max', 'min'] as const;
const INPLACE = ['add_', 'sub_', 'mul_', 'copy_'] as const;

type Method = (this: Tensor, ...a: unknown[]) => Tensor;
const call = (t: Tensor, name: string, ...a: unknown[]): Tensor => ((t as unknown as Record<string, Method>)[name]).apply(t, a);
const js = (x: unknown): string => (x === undefined ? 'undefined' : JSON.stringify(x));
const dimArgs = (lit: Lit): unknown[] => (lit.dim === undefined ? [] : lit.keepdim ? [lit.dim, true] : [lit.dim]);
const dimCode = (lit: Lit): string => dimArgs(lit).map(js).join(', ');

export const OPS: Record<string, OpDef> = {
  unary: { emit: (r, l) => `${r[0]}.${l.name}()`, run: (v, l) => call(v[0], l.name as string) },
  // log, sqrt, rsqrt and division on a domain kept away from 0
  logpos: { emit: (r, l) => `${r[0]}.abs().add(0.5).${l.name}()`, run: (v, l) => call(v[0].abs().add(0.5), l.name as string) },
  binary: { emit: (r, l) => `${r[0]}.${l.name}(${r[1]})`, run: (v, l) => call(v[0], l.name as string, v[1]) },
  div: { emit: (r) => `${r[0]}.div(${r[1]}.abs().add(0.5))`, run: (v) => v[0].div(v[1].abs().add(0.5)) },
  pow: { emit: (r, l) => `${r[0]}.abs().add(0.25).pow(${l.e})`, run: (v, l) => v[0].abs().add(0.25).pow(l.e as number) },
  scalar: { emit: (r, l) => `${r[0]}.${l.name}(${l.c})`, run: (v, l) => call(v[0], l.name as string, l.c) },
  clamp: { emit: (r, l) => `${r[0]}.clamp(${js(l.lo)}, ${js(l.hi)})`, run: (v, l) => v[0].clamp(l.lo as number | undefined, l.hi as number | undefined) },
  compare: { emit: (r, l) => `${r[0]}.${l.name}(${r[1]})`, run: (v, l) => call(v[0], l.name as string, v[1]) },
  where: { emit: (r) => `kiln.where(${r[0]}, ${r[1]}, ${r[2]})`, run: (v) => kiln.where(v[0], v[1], v[2]) },
  reduce: { emit: (r, l) => `${r[0]}.${l.name}(${dimCode(l)})`, run: (v, l) => call(v[0], l.name as string, ...dimArgs(l)) },
  logsumexp: { emit: (r, l) => `${r[0]}.logsumexp(${dimCode(l)})`, run: (v, l) => call(v[0], 'logsumexp', ...dimArgs(l)) },
  softmax: { emit: (r, l) => `${r[0]}.${l.name}(${l.dim})`, run: (v, l) => call(v[0], l.name as string, l.dim) },
  argmax: { emit: (r, l) => `${r[0]}.argmax(${dimCode(l)})`, run: (v, l) => call(v[0], 'argmax', ...dimArgs(l)) },
  reshape: { emit: (r, l) => `${r[0]}.reshape(${js(l.shape)})`, run: (v, l) => v[0].reshape(l.shape as number[]) },
  unsqueeze: { emit: (r, l) => `${r[0]}.unsqueeze(${l.dim})`, run: (v, l) => v[0].unsqueeze(l.dim as number) },
  squeeze: { emit: (r, l) => `${r[0]}.squeeze(${js(l.dim)})`, run: (v, l) => v[0].squeeze(l.dim as number | undefined) },
  transpose: { emit: (r, l) => `${r[0]}.transpose(${l.a}, ${l.b})`, run: (v, l) => v[0].transpose(l.a as number, l.b as number) },
  permute: { emit: (r, l) => `${r[0]}.permute(${js(l.perm)})`, run: (v, l) => v[0].permute(l.perm as number[]) },
  expand: { emit: (r, l) => `${r[0]}.expand(${js(l.shape)})`, run: (v, l) => v[0].expand(l.shape as number[]) },
  index: { emit: (r, l) => `${r[0]}.index(${(l.idx as unknown[]).map(js).join(', ')})`, run: (v, l) => v[0].index(...(l.idx as kiln.IndexEntry[])) },
  flatten: { emit: (r) => `${r[0]}.flatten()`, run: (v) => v[0].flatten() },
  contiguous: { emit: (r) => `${r[0]}.contiguous()`, run: (v) => v[0].contiguous() },
  clone: { emit: (r) => `${r[0]}.clone()`, run: (v) => v[0].clone() },
  detach: { emit: (r) => `${r[0]}.detach()`, run: (v) => v[0].detach() },
  cat: { emit: (r, l) => `kiln.cat([${r.join(', ')}], ${l.dim})`, run: (v, l) => kiln.cat(v, l.dim as number) },
  stack: { emit: (r, l) => `kiln.stack([${r.join(', ')}], ${l.dim})`, run: (v, l) => kiln.stack(v, l.dim as number) },
  matmul: { emit: (r) => `${r[0]}.matmul(${r[1]})`, run: (v) => v[0].matmul(v[1]) },
  gather: { emit: (r, l) => `${r[0]}.gather(${l.dim}, ${r[1]})`, run: (v, l) => v[0].gather(l.dim as number, v[1]) },
  indexSelect: { emit: (r, l) => `${r[0]}.indexSelect(${l.dim}, ${r[1]})`, run: (v, l) => v[0].indexSelect(l.dim as number, v[1]) },
  crossEntropy: { emit: (r) => `kiln.F.crossEntropy(${r[0]}, ${r[1]})`, run: (v) => kiln.F.crossEntropy(v[0], v[1]) },
  mseLoss: { emit: (r) => `kiln.F.mseLoss(${r[0]}, ${r[1]})`, run: (v) => kiln.F.mseLoss(v[0], v[1]) },
  inplace: {
    emit: (r, l) => `kiln.noGrad(() => ${r[0]}.${l.name}(${r[1]}))`,
    run: (v, l) => { kiln.noGrad(() => call(v[0], l.name as string, v[1])); },
  },
  fill: {
    emit: (r, l) => (l.c === 0 ? `kiln.noGrad(() => ${r[0]}.zero_())` : `kiln.noGrad(() => ${r[0]}.fill_(${l.c}))`),
    run: (v, l) => { kiln.noGrad(() => (l.c === 0 ? v[0].zero_() : v[0].fill_(l.c as number))); },
  },
  backward: {
    emit: (r, l) => (l.square ? `${r[0]}.mul(${r[0]}).sum().backward()` : `${r[0]}.sum().backward()`),
    run: (v, l) => { (l.square ? v[0].mul(v[0]) : v[0]).sum().backward(); },
  },
  grad: { emit: (r) => `${r[0]}.grad!`, run: (v) => {
    const g = v[0].grad;
    if (!g) throw new Error('fuzz: .grad is null');
    return g;
  } },
  step: { emit: () => 'opt.step()', run: (_v, _l, ctx) => { ctx.opt!.step(); } },
  zeroGrad: { emit: () => 'opt.zeroGrad()', run: (_v, _l, ctx) => { ctx.opt!.zeroGrad(); } },
};

// ---- the generator ----

export interface GenOptions {
  /** statements per program (before the tail) */
  maxStmts: number;
}

/** Generates one program from `seed`: always valid by construction of shapes and dtypes. */
export function generate(seed: number, opts: GenOptions = { maxStmts: 8 }): Program {
  const rng = new Rng(seed);
  const g = new Builder(rng);
  const n = rng.int(2, opts.maxStmts);
  for (let i = 0; i < n; i++) g.randomStmt();
  g.tail();
  return g.program();
}

const randomData = (rng: Rng, n: number, dtype: DType, hi = 4): number[] =>
  Array.from({ length: n }, () => (dtype === 'float32' ? Math.round((rng.next() * 4 - 2) * 16) / 16 : dtype === 'bool' ? rng.int(0, 1) : rng.int(0, hi - 1)));

class Builder {
  inits: Init[] = [];
  stmts: Stmt[] = [];
  vals: ValInfo[] = [];
  optimizer: OptimizerSpec | null = null;
  backwardDone = false;
  constructor(private rng: Rng) {}

  program(): Program {
    const floats = this.stmts.filter((st) => st.out).map((st) => ({ v: st.out!, i: st.id }));
    const returns: number[] = [];
    const k = this.rng.int(1, 3);
    for (let j = 0; j < k && floats.length; j++) returns.push(this.rng.pick(floats).i);
    return { inits: this.inits, stmts: this.stmts, returns: [...new Set(returns)], optimizer: this.optimizer, calls: 2 };
  }

  private shape(rank = this.rng.int(0, 3)): number[] {
    return Array.from({ length: rank }, () => this.rng.int(1, 4));
  }

  /** A new tensor that exists before the step. */
  init(role: Init['role'], shape: number[], dtype: DType = 'float32', hi = 4): number {
    const requiresGrad = role === 'arg' && dtype === 'float32' && this.rng.chance(0.2);
    const id = this.vals.length;
    this.inits.push({ id, role, shape, dtype, data: randomData(this.rng, numelOf(shape), dtype, hi), ...(requiresGrad ? { requiresGrad } : {}) });
    this.vals.push({ shape, dtype, grads: role === 'param' || requiresGrad ? [id] : [], expanded: false });
    return id;
  }

  private emit(op: string, refs: number[], lit: Lit, out: ValInfo | null): number {
    const id = out ? this.vals.length : -1;
    this.stmts.push({ id, op, refs, lit, out });
    if (out) this.vals.push(out);
    return id;
  }

  /** A float value, new (an init) or existing. */
  private float(shape?: number[]): number {
    const cands = this.vals.map((v, i) => ({ v, i })).filter(({ v }) => v.dtype === 'float32' && (!shape || sameShape(v.shape, shape)));
    if (cands.length && this.rng.chance(0.7)) return this.rng.pick(cands).i;
    const role = this.rng.pick(['arg', 'param', 'param', 'buffer'] as const);
    return this.init(role, shape ?? this.shape());
  }

  /** A float value whose shape broadcasts with `shape`. */
  private broadcastable(shape: number[]): number {
    const cands = this.vals.map((v, i) => ({ v, i })).filter(({ v }) => v.dtype === 'float32' && broadcasts(v.shape, shape));
    if (cands.length && this.rng.chance(0.7)) return this.rng.pick(cands).i;
    // drop leading dims and set some dims to 1
    const k = this.rng.int(0, shape.length);
    const s = shape.slice(shape.length - k).map((d) => (this.rng.chance(0.3) ? 1 : d));
    return this.init(this.rng.pick(['arg', 'param', 'buffer'] as const), this.rng.chance(0.2) ? [1, ...s] : s);
  }

  private info(r: number): ValInfo { return this.vals[r]; }

  private unionGrads(...rs: number[]): number[] { return [...new Set(rs.flatMap((r) => this.info(r).grads))]; }

  private elementwise(shape: number[], ...rs: number[]): ValInfo {
    return { shape, dtype: 'float32', grads: this.unionGrads(...rs), expanded: false };
  }

  randomStmt(): void {
    const rng = this.rng;
    const kind = rng.pick(['unary', 'unary', 'binary', 'binary', 'scalar', 'compare', 'reduce', 'reduce', 'softmax', 'view', 'view', 'view',
      'cat', 'matmul', 'gather', 'inplace', 'inplace', 'misc', 'loss'] as const);
    const a = this.float();
    const A = this.info(a);
    switch (kind) {
      case 'unary': {
        if (rng.chance(0.25)) this.emit('logpos', [a], { name: rng.pick(['log', 'sqrt', 'rsqrt']) }, this.elementwise(A.shape, a));
        else this.emit('unary', [a], { name: rng.pick(UNARY) }, this.elementwise(A.shape, a));
        return;
      }
      case 'binary': {
        const b = this.broadcastable(A.shape);
        const shape = broadcast(A.shape, this.info(b).shape);
        const [x, y] = rng.chance(0.5) ? [a, b] : [b, a];
        const op = rng.pick(['binary', 'binary', 'binary', 'div', 'pow'] as const);
        if (op === 'binary') this.emit('binary', [x, y], { name: rng.pick(BINARY) }, this.elementwise(shape, x, y));
        else if (op === 'div') this.emit('div', [x, y], {}, this.elementwise(shape, x, y));
        else this.emit('pow', [a], { e: rng.pick([2, 0.5, 3, -1]) }, this.elementwise(A.shape, a));
        return;
      }
      case 'scalar': {
        if (rng.chance(0.3)) {
          const lo = rng.chance(0.7) ? rng.pick([-1, -0.5, 0]) : undefined;
          const hi = lo === undefined || rng.chance(0.5) ? rng.pick([0.5, 1, 1.5]) : undefined;
          this.emit('clamp', [a], { lo, hi }, this.elementwise(A.shape, a));
        } else {
          this.emit('scalar', [a], { name: rng.pick(['add', 'sub', 'mul', 'div', 'maximum']), c: rng.pick([2, -1.5, 0.5, 3]) }, this.elementwise(A.shape, a));
        }
        return;
      }
      case 'compare': {
        const b = this.broadcastable(A.shape);
        const shape = broadcast(A.shape, this.info(b).shape);
        const c = this.emit('compare', [a, b], { name: rng.pick(COMPARE) }, { shape, dtype: 'bool', grads: [], expanded: false });
        const x = this.broadcastable(shape);
        const xs = broadcast(shape, this.info(x).shape);
        const y = this.broadcastable(xs);
        this.emit('where', [c, x, y], {}, this.elementwise(broadcast(xs, this.info(y).shape), x, y));
        return;
      }
      case 'reduce': {
        const { dim, keepdim, out } = this.dims(A.shape, rng.chance(0.7));
        const op = rng.pick(['reduce', 'reduce', 'reduce', 'logsumexp', 'argmax'] as const);
        if (op === 'argmax') {
          const d = A.shape.length && rng.chance(0.7) ? rng.int(0, A.shape.length - 1) : undefined;
          const kd = d !== undefined && rng.chance(0.3);
          const shape = d === undefined ? [] : A.shape.filter((_, i) => i !== d || kd).map((s, i) => (kd && i === d ? 1 : s));
          this.emit('argmax', [a], { dim: d, keepdim: kd }, { shape, dtype: 'int32', grads: [], expanded: false });
        } else if (op === 'logsumexp') {
          if (dim === undefined) return;
          this.emit('logsumexp', [a], { dim, keepdim }, this.elementwise(out, a));
        } else {
          this.emit('reduce', [a], { name: rng.pick(REDUCE), dim, keepdim }, this.elementwise(out, a));
        }
        return;
      }
      case 'softmax': {
        if (A.shape.length === 0) return;
        this.emit('softmax', [a], { name: rng.pick(['softmax', 'logSoftmax']), dim: rng.int(-A.shape.length, A.shape.length - 1) }, this.elementwise(A.shape, a));
        return;
      }
      case 'view': return this.view(a);
      case 'cat': {
        if (A.shape.length === 0) return;
        const dim = rng.int(0, A.shape.length - 1);
        const parts = [a];
        for (let k = rng.int(1, 2); k > 0; k--) {
          const s = A.shape.map((d, i) => (i === dim ? rng.int(1, 3) : d));
          parts.push(rng.chance(0.4) ? a : this.float(s));
        }
        if (rng.chance(0.3)) {
          const same = parts.map(() => a);
          const at = rng.int(0, A.shape.length);
          this.emit('stack', same, { dim: at }, this.elementwise(insertAt(A.shape, at, same.length), a));
          return;
        }
        const total = parts.reduce((n, p) => n + this.info(p).shape[dim], 0);
        this.emit('cat', parts, { dim }, this.elementwise(A.shape.map((d, i) => (i === dim ? total : d)), ...parts));
        return;
      }
      case 'matmul': {
        const r = A.shape.length;
        if (r === 0) return;
        const k = A.shape[r - 1];
        const bShape = r === 1 ? (rng.chance(0.5) ? [k] : [k, rng.int(1, 4)]) : rng.chance(0.2) ? [k] : [...(rng.chance(0.3) ? A.shape.slice(0, r - 2) : []), k, rng.int(1, 4)];
        const b = this.float(bShape);
        const out = matmulShape(A.shape, this.info(b).shape);
        this.emit('matmul', [a, b], {}, this.elementwise(out, a, b));
        return;
      }
      case 'gather': {
        if (A.shape.length === 0) return;
        const dim = rng.int(0, A.shape.length - 1);
        if (rng.chance(0.5)) {
          const n = rng.int(1, 4);
          const idx = this.init('index', [n], 'int32', A.shape[dim]);
          this.emit('indexSelect', [a, idx], { dim }, this.elementwise(A.shape.map((d, i) => (i === dim ? n : d)), a));
        } else {
          const shape = A.shape.map((d, i) => (i === dim ? rng.int(1, 4) : rng.int(1, d)));
          const idx = this.init('index', shape, 'int32', A.shape[dim]);
          this.emit('gather', [a, idx], { dim }, this.elementwise(shape, a));
        }
        return;
      }
      case 'inplace': {
        // Targets: tensors without gradient history (buffers, plain arguments, their views, detached values).
        const targets = this.vals.map((v, i) => ({ v, i })).filter(({ v, i }) => v.dtype === 'float32' && !v.expanded && v.grads.length === 0 && this.writable(i));
        if (!targets.length) return;
        const t = rng.pick(targets).i;
        const T = this.info(t);
        if (rng.chance(0.25)) { this.emit('fill', [t], { c: rng.pick([0, 1.5]) }, null); return; }
        const name = rng.pick(INPLACE);
        const src = this.broadcastable(T.shape);
        if (!sameShape(broadcast(T.shape, this.info(src).shape), T.shape)) return;
        this.emit('inplace', [t, src], { name }, null);
        return;
      }
      case 'misc': {
        const op = rng.pick(['detach', 'clone', 'contiguous'] as const);
        this.emit(op, [a], {}, op === 'detach' ? { ...A, grads: [], expanded: A.expanded } : op === 'clone' ? this.elementwise(A.shape, a) : { ...A });
        return;
      }
      case 'loss': {
        if (A.shape.length !== 2 || rng.chance(0.5)) {
          const b = this.float(A.shape);
          this.emit('mseLoss', [a, b], {}, this.elementwise([], a, b));
          return;
        }
        const idx = this.init('index', [A.shape[0]], 'int32', A.shape[1]);
        this.emit('crossEntropy', [a, idx], {}, this.elementwise([], a));
        return;
      }
    }
  }

  /** Whether writing into value `i` is a write PyTorch allows: not an expand view, not a non-leaf-with-history base. */
  private writable(i: number): boolean {
    const init = this.inits.find((x) => x.id === i);
    return !init || (init.role !== 'index' && !init.requiresGrad);
  }

  private dims(shape: number[], withDim: boolean): { dim: number | number[] | undefined; keepdim: boolean; out: number[] } {
    const rng = this.rng;
    if (!withDim || shape.length === 0) return { dim: undefined, keepdim: false, out: [] };
    const keepdim = rng.chance(0.4);
    let axes: number[];
    let dim: number | number[];
    if (rng.chance(0.6)) {
      const d = rng.int(-shape.length, shape.length - 1);
      dim = d;
      axes = [d < 0 ? d + shape.length : d];
    } else {
      axes = shape.map((_, i) => i).filter(() => rng.chance(0.5));
      if (!axes.length) axes = [0];
      dim = axes;
    }
    const out = keepdim ? shape.map((s, i) => (axes.includes(i) ? 1 : s)) : shape.filter((_, i) => !axes.includes(i));
    return { dim, keepdim, out };
  }

  private view(a: number): void {
    const rng = this.rng;
    const A = this.info(a);
    const r = A.shape.length;
    const view = (op: string, lit: Lit, shape: number[], expanded = A.expanded) => this.emit(op, [a], lit, { shape, dtype: A.dtype, grads: A.grads, expanded });
    const op = rng.pick(['reshape', 'unsqueeze', 'squeeze', 'transpose', 'permute', 'expand', 'index', 'index', 'flatten'] as const);
    switch (op) {
      case 'reshape': {
        const n = numelOf(A.shape);
        const shape = rng.chance(0.3) ? [n] : factor(rng, n);
        if (rng.chance(0.3) && shape.length) shape[rng.int(0, shape.length - 1)] = -1;
        view('reshape', { shape }, shape.map((d) => (d === -1 ? n / numelOf(shape.filter((x) => x !== -1)) : d)));
        return;
      }
      case 'unsqueeze': { const d = rng.int(-r - 1, r); view('unsqueeze', { dim: d }, insertAt(A.shape, d < 0 ? d + r + 1 : d, 1)); return; }
      case 'squeeze': {
        const d = r && rng.chance(0.5) ? rng.int(0, r - 1) : undefined;
        view('squeeze', { dim: d }, A.shape.filter((s, i) => !(s === 1 && (d === undefined || d === i))));
        return;
      }
      case 'transpose': {
        if (r < 2) return;
        const x = rng.int(0, r - 1), y = rng.int(0, r - 1);
        const s = [...A.shape];
        [s[x], s[y]] = [s[y], s[x]];
        view('transpose', { a: x, b: y }, s);
        return;
      }
      case 'permute': {
        const perm = A.shape.map((_, i) => i).sort(() => rng.next() - 0.5);
        view('permute', { perm }, perm.map((p) => A.shape[p]));
        return;
      }
      case 'expand': {
        const shape = A.shape.map((d) => (d === 1 ? rng.int(1, 3) : d));
        const lead = rng.chance(0.3) ? [rng.int(1, 3)] : [];
        view('expand', { shape: [...lead, ...shape] }, [...lead, ...shape], true);
        return;
      }
      case 'index': {
        if (r === 0) return;
        const idx: kiln.IndexEntry[] = [];
        const shape: number[] = [];
        const k = rng.int(1, r);
        for (let d = 0; d < r; d++) {
          const size = A.shape[d];
          if (d >= k) { shape.push(size); continue; }
          const c = rng.next();
          if (c < 0.35) { idx.push(rng.int(-size, size - 1)); continue; }
          if (c < 0.5) { idx.push(null); shape.push(size); continue; }
          const start = rng.int(0, size - 1), end = rng.int(start + 1, size), step = rng.pick([1, 1, 2]);
          idx.push(step === 1 ? [start, end] : [start, end, step]);
          shape.push(Math.ceil((end - start) / step));
        }
        view('index', { idx }, shape);
        return;
      }
      case 'flatten': view('flatten', {}, [numelOf(A.shape)]); return;
    }
  }

  /** The end of a step: maybe backward, reads of .grad, an optimizer step, and more statements. */
  tail(): void {
    const rng = this.rng;
    const params = new Set(this.inits.filter((x) => x.role === 'param').map((x) => x.id));
    const withGrad = this.stmts.filter((st) => st.out && st.out.dtype === 'float32' && st.out.grads.some((g) => params.has(g))).map((st) => ({ v: st.out!, i: st.id }));
    if (!withGrad.length || rng.chance(0.15)) return;
    const { v: L, i: l } = rng.pick(withGrad);
    this.emit('backward', [l], { square: rng.chance(0.3) }, null);
    const reached = L.grads.filter((g) => params.has(g));
    if (rng.chance(0.4)) {
      const p = rng.pick(reached);
      this.emit('grad', [p], {}, { shape: [...this.info(p).shape], dtype: 'float32', grads: [], expanded: false });
    }
    if (rng.chance(0.6)) {
      this.optimizer = { kind: rng.pick(['SGD', 'SGD', 'Adam'] as const), lr: rng.pick([0.1, 0.5]), momentum: rng.pick([0, 0.9]) };
      this.emit('step', [], {}, null);
      if (rng.chance(0.5)) this.emit('zeroGrad', [], {}, null);
    }
    for (let k = rng.int(0, 2); k > 0; k--) {
      // After the update only gradient-free work (PyTorch: the graph was consumed).
      const before = this.stmts.length;
      this.randomStmt();
      for (const s of this.stmts.slice(before)) if (s.out) s.out.grads = [];
    }
  }
}

// ---- shape helpers ----

export const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

function broadcasts(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 1; i <= Math.max(a.length, b.length); i++) {
    const x = a[a.length - i] ?? 1, y = b[b.length - i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return false;
  }
  return true;
}

function broadcast(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const x = a[a.length - n + i] ?? 1, y = b[b.length - n + i] ?? 1;
    return x === 1 ? y : x;
  });
}

const insertAt = (s: readonly number[], at: number, d: number): number[] => [...s.slice(0, at), d, ...s.slice(at)];

function factor(rng: Rng, n: number): number[] {
  const out: number[] = [];
  let left = n;
  for (const p of [2, 3, 2, 2]) {
    if (left % p === 0 && rng.chance(0.5)) { out.push(p); left /= p; }
  }
  out.push(left);
  return rng.chance(0.3) ? [1, ...out] : out;
}

function matmulShape(a: readonly number[], b: readonly number[]): number[] {
  const a2 = a.length === 1 ? [1, a[0]] : a, b2 = b.length === 1 ? [b[0], 1] : b;
  const batch = broadcast(a2.slice(0, -2), b2.slice(0, -2));
  const out = [...batch, a2[a2.length - 2], b2[b2.length - 1]];
  if (a.length === 1) out.splice(out.length - 2, 1);
  if (b.length === 1) out.pop();
  return out;
}

// ---- printing ----

const name = (p: Program, r: number): string => {
  const init = p.inits.find((x) => x.id === r);
  if (!init) return `v${r}`;
  return `${init.role === 'arg' ? 'x' : init.role === 'param' ? 'p' : init.role === 'buffer' ? 'b' : 'i'}${r}`;
};

/** The program as TypeScript a user can paste into a test (eager; wrap `step` in compile to compare). */
export function print(p: Program, device: Device = 'cpu'): string {
  const lines: string[] = [];
  const dev = device === 'cpu' ? '' : `, device: '${device}'`;
  p.inits.forEach((x) => {
    const arr = x.dtype === 'float32' ? 'Float32Array' : 'Int32Array';
    const grad = x.role === 'param' || x.requiresGrad ? ', requiresGrad: true' : '';
    lines.push(`const ${name(p, x.id)} = kiln.tensor(new ${arr}(${JSON.stringify(x.data)}), { shape: ${JSON.stringify(x.shape)}${x.dtype === 'bool' ? ", dtype: 'bool'" : ''}${grad}${dev} });`);
  });
  const params = p.inits.filter((x) => x.role === 'param').map((x) => name(p, x.id));
  if (p.optimizer) {
    const o = p.optimizer;
    const extra = o.kind === 'SGD' ? (o.momentum ? `, momentum: ${o.momentum}` : '') : `, eps: ${ADAM_EPS}`;
    lines.push(`const opt = new kiln.optim.${o.kind}([${params.join(', ')}], { lr: ${o.lr}${extra} });`);
  }
  const args = p.inits.filter((x) => x.role === 'arg').map((x) => name(p, x.id));
  lines.push(`const step = (${args.map((a) => `${a}: kiln.Tensor`).join(', ')}) => {`);
  for (const s of p.stmts) {
    const code = OPS[s.op].emit(s.refs.map((r) => name(p, r)), s.lit);
    lines.push(s.out ? `  const ${name(p, s.id)} = ${code};` : `  ${code};`);
  }
  lines.push(`  return [${p.returns.map((r) => name(p, r)).join(', ')}];`);
  lines.push('};');
  lines.push(`// called ${p.calls} time(s): eagerly step(${args.join(', ')}), compiled await kiln.compile(step)(${args.join(', ')})`);
  return lines.join('\n');
}

// ---- running ----

export type Mode = 'eager' | 'compiled' | 'unfused';

/** Everything a run leaves behind, read back to the host. */
export interface Observed {
  /** per call, the returned values */
  returns: (Float32Array | Int32Array | Uint8Array | number[])[][];
  /** per init: its final value and its .grad (null when none) */
  values: number[][];
  grads: (number[] | null)[];
  /** the optimizer's state tensors by name */
  optState: Record<string, number[]>;
}

const toNums = (a: ArrayLike<number>): number[] => Array.from(a, Number);

/** Runs `p` in one mode on `device`, from fresh tensors. Throws what kiln throws. */
export async function run(p: Program, mode: Mode, device: Device): Promise<Observed> {
  const tensors = p.inits.map((x) => kiln.tensor(x.dtype === 'float32' ? new Float32Array(x.data) : new Int32Array(x.data), {
    shape: x.shape, dtype: x.dtype, device, requiresGrad: x.role === 'param' || x.requiresGrad === true,
  }));
  const params = tensors.filter((_, i) => p.inits[i].role === 'param');
  let opt: RunContext['opt'] = null;
  if (p.optimizer) {
    const o = p.optimizer;
    if (!params.length) throw new Error('fuzz: optimizer without parameters');
    opt = o.kind === 'SGD' ? new kiln.optim.SGD(params, { lr: o.lr, momentum: o.momentum }) : new kiln.optim.Adam(params, { lr: o.lr, eps: ADAM_EPS });
  }
  const ctx: RunContext = { opt, params };
  const argIdx = p.inits.map((x, i) => (x.role === 'arg' ? i : -1)).filter((i) => i >= 0);
  const body = (...args: Tensor[]): Tensor[] => {
    const env = new Map<number, Tensor>();
    p.inits.forEach((x, i) => env.set(x.id, tensors[i]));
    argIdx.forEach((i, k) => env.set(p.inits[i].id, args[k]));
    for (const s of p.stmts) {
      const out = OPS[s.op].run(s.refs.map((r) => env.get(r)!), s.lit, ctx);
      if (s.out) env.set(s.id, out as Tensor);
    }
    return p.returns.map((r) => env.get(r)!);
  };
  const fn = mode === 'eager' ? null : kiln.compile(body, { fuse: mode === 'compiled' });
  const returns: Observed['returns'] = [];
  const args = argIdx.map((i) => tensors[i]);
  for (let c = 0; c < p.calls; c++) {
    const out = fn ? await fn(...args) : body(...args);
    const vals: Observed['returns'][number] = [];
    for (const t of out) vals.push(toNums(await t.data()));
    returns.push(vals);
  }
  const values: number[][] = [], grads: (number[] | null)[] = [];
  for (const t of tensors) {
    values.push(toNums(await t.data()));
    grads.push(t.grad ? toNums(await t.grad.data()) : null);
  }
  const optState: Record<string, number[]> = {};
  if (opt) {
    for (const [i, slots] of Object.entries(opt.stateDict().state)) {
      for (const [k, t] of Object.entries(slots)) if (t) optState[`${i}.${k}`] = toNums(await t.data());
    }
  }
  return { returns, values, grads, optState };
}

/** The first difference between two runs, described, or null when they agree within float32 tolerance. */
export function compare(p: Program, a: Observed, b: Observed): string | null {
  const close = (x: ArrayLike<number>, y: ArrayLike<number>): number => {
    if (x.length !== y.length) return 0;
    for (let i = 0; i < x.length; i++) {
      const u = Number(x[i]), v = Number(y[i]);
      if (Number.isNaN(u) && Number.isNaN(v)) continue;
      if (u === v) continue;
      if (!(Math.abs(u - v) <= 1e-4 + 2e-3 * Math.max(Math.abs(u), Math.abs(v)))) return i;
    }
    return -1;
  };
  const show = (x: ArrayLike<number>) => `[${Array.from(x, (n) => +Number(n).toPrecision(5)).slice(0, 8).join(', ')}${x.length > 8 ? ', ...' : ''}]`;
  for (let c = 0; c < a.returns.length; c++) {
    for (let k = 0; k < a.returns[c].length; k++) {
      if (close(a.returns[c][k], b.returns[c][k]) !== -1) return `return ${name(p, p.returns[k])} of call ${c + 1}: ${show(a.returns[c][k])} vs ${show(b.returns[c][k])}`;
    }
  }
  for (let i = 0; i < a.values.length; i++) {
    const n = name(p, p.inits[i].id);
    if (close(a.values[i], b.values[i]) !== -1) return `value of ${n}: ${show(a.values[i])} vs ${show(b.values[i])}`;
    const ga = a.grads[i], gb = b.grads[i];
    if ((ga === null) !== (gb === null)) return `${n}.grad: ${ga ? show(ga) : 'null'} vs ${gb ? show(gb) : 'null'}`;
    if (ga && gb && close(ga, gb) !== -1) return `${n}.grad: ${show(ga)} vs ${show(gb)}`;
  }
  for (const k of Object.keys(a.optState)) {
    if (!b.optState[k] || close(a.optState[k], b.optState[k]) !== -1) return `optimizer state ${k}: ${show(a.optState[k])} vs ${b.optState[k] ? show(b.optState[k]) : 'missing'}`;
  }
  return null;
}
