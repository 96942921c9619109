// Layers: Linear, Embedding, activations, Flatten, Dropout, and the containers Sequential, ModuleList
// and ModuleDict.

import { randn, uniform, type DeviceName, type Tensor } from '../runtime/index.ts';
import * as F from './functional.ts';
import { Module, Parameter } from './module.ts';

export interface LinearOptions {
  /** default true */
  bias?: boolean;
  device?: DeviceName;
}

/**
 * `y = x W^T + b` with weight `[outFeatures, inFeatures]` and bias `[outFeatures]`, initialised like
 * PyTorch (kaiming_uniform with a = sqrt(5)): both uniform in ±1/sqrt(inFeatures).
 */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  weight: Tensor;
  bias: Tensor | null;

  constructor(inFeatures: number, outFeatures: number, opts: LinearOptions = {}) {
    super();
    for (const [n, v] of [['inFeatures', inFeatures], ['outFeatures', outFeatures]] as const) {
      if (!Number.isInteger(v) || v < 0) throw new Error(`Linear: ${n} must be a non-negative integer, got ${v}`);
    }
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const bound = inFeatures > 0 ? 1 / Math.sqrt(inFeatures) : 0;
    const device = opts.device;
    this.weight = new Parameter(uniform([outFeatures, inFeatures], -bound, bound, { device }));
    this.bias = (opts.bias ?? true) ? new Parameter(uniform([outFeatures], -bound, bound, { device })) : null;
  }

  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }

  extraRepr(): string {
    return `inFeatures=${this.inFeatures}, outFeatures=${this.outFeatures}, bias=${this.bias !== null}`;
  }
}

export interface EmbeddingOptions {
  device?: DeviceName;
}

/** A lookup table `[numEmbeddings, embeddingDim]` (initialised N(0, 1)); `forward(indices)` is `weight[indices]`. */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  weight: Tensor;
  constructor(numEmbeddings: number, embeddingDim: number, opts: EmbeddingOptions = {}) {
    super();
    for (const [n, v] of [['numEmbeddings', numEmbeddings], ['embeddingDim', embeddingDim]] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new Error(`Embedding: ${n} must be a positive integer, got ${v}`);
    }
    this.numEmbeddings = numEmbeddings;
    this.embeddingDim = embeddingDim;
    this.weight = new Parameter(randn([numEmbeddings, embeddingDim], { device: opts.device }));
  }
  forward(indices: Tensor): Tensor { return F.embedding(indices, this.weight); }
  extraRepr(): string { return `${this.numEmbeddings}, ${this.embeddingDim}`; }
}

export class Identity extends Module {
  forward(x: Tensor): Tensor { return x; }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor { return x.relu(); }
}

export class Sigmoid extends Module {
  forward(x: Tensor): Tensor { return x.sigmoid(); }
}

export class Tanh extends Module {
  forward(x: Tensor): Tensor { return x.tanh(); }
}

export class GELU extends Module {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') { super(); }
  forward(x: Tensor): Tensor { return F.gelu(x, { approximate: this.approximate }); }
  extraRepr(): string { return `approximate='${this.approximate}'`; }
}

export class SiLU extends Module {
  forward(x: Tensor): Tensor { return F.silu(x); }
}

export class LeakyReLU extends Module {
  constructor(readonly negativeSlope = 0.01) { super(); }
  forward(x: Tensor): Tensor { return F.leakyRelu(x, this.negativeSlope); }
  extraRepr(): string { return `negativeSlope=${this.negativeSlope}`; }
}

export class ELU extends Module {
  constructor(readonly alpha = 1) { super(); }
  forward(x: Tensor): Tensor { return F.elu(x, this.alpha); }
  extraRepr(): string { return `alpha=${this.alpha}`; }
}

export class Softplus extends Module {
  constructor(readonly beta = 1, readonly threshold = 20) { super(); }
  forward(x: Tensor): Tensor { return F.softplus(x, this.beta, this.threshold); }
  extraRepr(): string { return `beta=${this.beta}, threshold=${this.threshold}`; }
}

function checkDim(name: string, dim: unknown): void {
  if (!Number.isInteger(dim)) throw new Error(`${name}: dim must be an integer (the dimension to normalise over), got ${String(dim)}`);
}

export class Softmax extends Module {
  constructor(readonly dim: number) { super(); checkDim('Softmax', dim); }
  forward(x: Tensor): Tensor { return x.softmax(this.dim); }
  extraRepr(): string { return `dim=${this.dim}`; }
}

export class LogSoftmax extends Module {
  constructor(readonly dim: number) { super(); checkDim('LogSoftmax', dim); }
  forward(x: Tensor): Tensor { return x.logSoftmax(this.dim); }
  extraRepr(): string { return `dim=${this.dim}`; }
}

/** Flattens dims startDim..endDim (default 1..-1: keeps the batch dimension, unlike Tensor.flatten). */
export class Flatten extends Module {
  constructor(readonly startDim = 1, readonly endDim = -1) { super(); }
  forward(x: Tensor): Tensor { return x.flatten(this.startDim, this.endDim); }
  extraRepr(): string { return `startDim=${this.startDim}, endDim=${this.endDim}`; }
}

/** Inverted dropout in training mode (zero with probability p, scale the rest by 1/(1-p)); identity in eval mode. */
export class Dropout extends Module {
  readonly p: number;
  constructor(p = 0.5) {
    super();
    if (!(p >= 0 && p <= 1)) throw new Error(`Dropout: probability has to be between 0 and 1, but got ${p}`);
    this.p = p;
  }
  forward(x: Tensor): Tensor { return F.dropout(x, this.p, this.training); }
  extraRepr(): string { return `p=${this.p}`; }
}

function checkModules(op: string, modules: readonly Module[]): void {
  modules.forEach((m, i) => {
    if (!(m instanceof Module)) throw new Error(`${op}: argument ${i} is not an nn.Module`);
  });
}

/** Holds sub-modules in a list; children are named '0', '1', ... (the same module may appear twice). */
export class ModuleList extends Module {
  constructor(modules: Iterable<Module> = []) {
    super();
    const list = [...modules];
    checkModules('ModuleList', list);
    list.forEach((m) => this.append(m));
  }
  /** The modules in order, duplicates included (children() lists each module once). */
  items(): Module[] {
    const self = this as unknown as Record<string, unknown>;
    return Object.keys(this).filter((k) => /^\d+$/.test(k)).map((k) => self[k]).filter((m): m is Module => m instanceof Module);
  }
  get length(): number { return this.items().length; }
  at(i: number): Module {
    const n = this.length;
    const k = i < 0 ? i + n : i;
    if (!Number.isInteger(k) || k < 0 || k >= n) throw new Error(`${this.constructor.name}: index ${i} is out of range for ${n} modules`);
    return this.items()[k];
  }
  append(m: Module): this {
    checkModules(this.constructor.name, [m]);
    (this as unknown as Record<string, Module>)[String(this.length)] = m;
    return this;
  }
  [Symbol.iterator](): Iterator<Module> { return this.items()[Symbol.iterator](); }
}

/** Runs its modules in order, each on the previous one's output; children are named '0', '1', ... */
export class Sequential extends ModuleList {
  constructor(...modules: Module[]) {
    super(modules);
  }
  forward(x: Tensor): Tensor {
    let y = x;
    for (const m of this.items()) y = m.forward(y);
    return y;
  }
}

/** Holds sub-modules by name (children named by their keys, in insertion order). */
export class ModuleDict extends Module {
  constructor(modules: Record<string, Module> | Iterable<[string, Module]> = {}) {
    super();
    const entries = Symbol.iterator in Object(modules) ? [...(modules as Iterable<[string, Module]>)] : Object.entries(modules);
    for (const [k, m] of entries) this.set(k, m);
  }
  set(key: string, m: Module): this {
    if (typeof key !== 'string' || key === '' || key.includes('.')) throw new Error(`ModuleDict: key must be a non-empty string without '.', got ${JSON.stringify(key)}`);
    if (key in Module.prototype || key in ModuleDict.prototype || key === '_training') throw new Error(`ModuleDict: key '${key}' would shadow a Module attribute`);
    checkModules('ModuleDict', [m]);
    (this as unknown as Record<string, Module>)[key] = m;
    return this;
  }
  get(key: string): Module {
    const m = (this as unknown as Record<string, unknown>)[key];
    if (!(m instanceof Module) || !Object.hasOwn(this, key)) throw new Error(`ModuleDict: no module named '${key}' (keys: ${this.keys().join(', ')})`);
    return m;
  }
  has(key: string): boolean { return Object.hasOwn(this, key) && (this as unknown as Record<string, unknown>)[key] instanceof Module; }
  keys(): string[] { return this.namedChildren().map(([k]) => k); }
  values(): Module[] { return this.namedChildren().map(([, m]) => m); }
  entries(): [string, Module][] { return this.namedChildren(); }
  get length(): number { return this.keys().length; }
  [Symbol.iterator](): Iterator<string> { return this.keys()[Symbol.iterator](); }
}
