// makemore, part 2 (Karpathy's "Building makemore Part 2: MLP"; Bengio et al. 2003): a character-level
// MLP language model over first names. Each of the 3 previous characters is embedded (`C[X]`, a
// 27 x 10 table), the embeddings are concatenated, go through a tanh layer of 200 units and a linear
// layer to the 27 logits of the next character; trained with cross-entropy and SGD on minibatches of
// 32, then it samples new names with multinomial. The names are data/names.txt (built once by
// scripts/build-names.ts from the @stdlib English first-name lists).
//
//   npx tsx examples/makemore.ts                    # eager, CPU
//   npx tsx examples/makemore.ts --compile          # the training step compiled
//   npx tsx examples/makemore.ts --device webgpu    # on the GPU (eager or --compile)
//   npx tsx examples/makemore.ts --steps 20000 --batch-size 32 --seed 2147483647

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import * as kiln from '../index.ts';
import type { Tensor } from '../index.ts';

const { nn, F, optim } = kiln;

type Device = 'cpu' | 'webgpu';

/** Context length: how many characters predict the next one. */
export const BLOCK_SIZE = 3;

/** Reads the names list: lowercase a-z words, one per line (anything else is a clear error). */
export function loadNames(path: string | URL = new URL('../data/names.txt', import.meta.url)): string[] {
  const words = readFileSync(path, 'utf8').split('\n').filter((w) => w !== '');
  words.forEach((w, i) => {
    if (!/^[a-z]+$/.test(w)) throw new Error(`makemore: line ${i + 1} of ${String(path)} is not a lowercase a-z name: ${JSON.stringify(w.slice(0, 40))}`);
  });
  if (words.length === 0) throw new Error(`makemore: ${String(path)} holds no names`);
  return words;
}

/** '.' (start and end of a name) is 0, 'a'..'z' are 1..26. */
export const stoi = (c: string): number => (c === '.' ? 0 : c.charCodeAt(0) - 96);
export const itos = (i: number): string => (i === 0 ? '.' : String.fromCharCode(96 + i));

/** Every (context of BLOCK_SIZE characters, next character) pair of the words: X [n, 3] and Y [n], int32. */
export function buildDataset(words: readonly string[], device: Device = 'cpu'): { X: Tensor; Y: Tensor } {
  const xs: number[] = [], ys: number[] = [];
  for (const w of words) {
    let context = new Array<number>(BLOCK_SIZE).fill(0);
    for (const ch of w + '.') {
      const ix = stoi(ch);
      xs.push(...context);
      ys.push(ix);
      context = [...context.slice(1), ix];
    }
  }
  return {
    X: kiln.tensor(Int32Array.from(xs), { shape: [ys.length, BLOCK_SIZE], device }),
    Y: kiln.tensor(Int32Array.from(ys), { shape: [ys.length], device }),
  };
}

/** The model, as in the lecture: C, W1, b1, W2, b2 drawn from N(0, 1) with a seeded generator. */
export class MakemoreMLP extends nn.Module {
  C: Tensor;
  W1: Tensor;
  b1: Tensor;
  W2: Tensor;
  b2: Tensor;
  constructor(g: kiln.Generator, opts: { embed?: number; hidden?: number; device?: Device } = {}) {
    super();
    const { embed = 10, hidden = 200, device } = opts;
    const r = (shape: number[]) => new nn.Parameter(kiln.randn(shape, { generator: g, device }));
    this.C = r([27, embed]);
    this.W1 = r([BLOCK_SIZE * embed, hidden]);
    this.b1 = r([hidden]);
    this.W2 = r([hidden, 27]);
    this.b2 = r([27]);
  }
  /** Logits [n, 27] for contexts X [n, 3]. */
  forward(X: Tensor): Tensor {
    const emb = this.C.index(X); // [n, 3, embed]: PyTorch's C[X]
    const h = emb.view([-1, this.W1.shape[0]]).matmul(this.W1).add(this.b1).tanh();
    return h.matmul(this.W2).add(this.b2);
  }
}

/** One SGD step on a minibatch, as ordinary eager code (compiled with --compile). */
export function makemoreStep(model: MakemoreMLP, opt: kiln.optim.Optimizer, Xb: Tensor, Yb: Tensor): Tensor {
  const loss = F.crossEntropy(model.forward(Xb), Yb);
  loss.backward();
  opt.step();
  opt.zeroGrad();
  return loss;
}

/** `n` new names, one character at a time from the softmax (multinomial with the generator). */
export async function sample(model: MakemoreMLP, n: number, g: kiln.Generator): Promise<string[]> {
  const device = model.C.device;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let context = new Array<number>(BLOCK_SIZE).fill(0);
    let name = '';
    for (;;) {
      const ix = await kiln.noGrad(() => {
        const logits = model.forward(kiln.tensor(Int32Array.from(context), { shape: [1, BLOCK_SIZE], device }));
        return kiln.multinomial(logits.softmax(1), 1, { generator: g });
      }).item();
      if (ix === 0 || name.length >= 30) break;
      name += itos(ix);
      context = [...context.slice(1), ix];
    }
    out.push(name);
  }
  return out;
}

export interface MakemoreOptions {
  steps?: number;
  batchSize?: number;
  compile?: boolean;
  device?: Device;
  seed?: number;
  /** print the loss every this many steps */
  every?: number;
  samples?: number;
  log?: boolean;
}

export interface MakemoreResult {
  /** the minibatch loss at each printed step */
  losses: number[];
  trainLoss: number;
  devLoss: number;
  names: string[];
}

export async function run(options: MakemoreOptions = {}): Promise<MakemoreResult> {
  const { steps = 20000, batchSize = 32, compile = false, device = 'cpu', seed = 2147483647, every = 1000, samples = 20, log = true } = options;
  const print = (...a: unknown[]): void => { if (log) console.log(...a); };
  if (device === 'webgpu' && !(await kiln.webgpu.available())) {
    throw new Error('makemore: --device webgpu was asked for but no WebGPU adapter is available (in Node, install a Vulkan driver such as Mesa lavapipe; see scripts/install-lavapipe.sh)');
  }
  const g = new kiln.Generator().manualSeed(seed);
  // Shuffle the words with the generator, then 80% train, 10% dev, 10% test.
  const words = loadNames();
  for (let i = words.length - 1; i > 0; i--) {
    const j = Math.floor(g.nextUniform() * (i + 1));
    [words[i], words[j]] = [words[j], words[i]];
  }
  const n1 = Math.floor(0.8 * words.length), n2 = Math.floor(0.9 * words.length);
  const train = buildDataset(words.slice(0, n1), device), dev = buildDataset(words.slice(n1, n2), device);
  print(`${words.length} names; ${train.X.shape[0]} training examples, ${dev.X.shape[0]} dev examples (${device}${compile ? ', compiled' : ''})`);

  const model = new MakemoreMLP(g, { device });
  print(`parameters: ${model.parameters().reduce((n, p) => n + p.numel(), 0)}`);
  const opt = new optim.SGD(model.parameters(), { lr: 0.1 });
  const step = compile ? kiln.compile((Xb: Tensor, Yb: Tensor) => makemoreStep(model, opt, Xb, Yb)) : null;

  const losses: number[] = [];
  for (let i = 0; i < steps; i++) {
    const ix = kiln.randint(0, train.X.shape[0], [batchSize], { generator: g, device });
    const Xb = train.X.index(ix), Yb = train.Y.index(ix);
    if (i === Math.floor(steps / 2)) opt.lr = 0.01; // the lecture's step decay
    const loss = step ? await step(Xb, Yb) : makemoreStep(model, opt, Xb, Yb);
    if (i % every === 0 || i === steps - 1) {
      const v = await loss.item();
      losses.push(v);
      print(`${String(i).padStart(7)}/${steps}: ${v.toFixed(4)}`);
    }
  }
  const evalLoss = (d: { X: Tensor; Y: Tensor }) => kiln.noGrad(() => F.crossEntropy(model.forward(d.X), d.Y)).item();
  const trainLoss = await evalLoss(train), devLoss = await evalLoss(dev);
  print(`train loss ${trainLoss.toFixed(4)}, dev loss ${devLoss.toFixed(4)}`);
  const names = await sample(model, samples, g);
  print(names.join('\n'));
  return { losses, trainLoss, devLoss, names };
}

function parseCli(argv: string[]): MakemoreOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      steps: { type: 'string' }, 'batch-size': { type: 'string' }, compile: { type: 'boolean' },
      device: { type: 'string' }, seed: { type: 'string' }, every: { type: 'string' }, samples: { type: 'string' },
    },
  });
  const int = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`makemore: --${name} expects a non-negative integer, got '${v}'`);
    return n;
  };
  const device = values.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'webgpu') throw new Error(`makemore: --device must be 'cpu' or 'webgpu', got '${device}'`);
  return {
    steps: int('steps', values.steps), batchSize: int('batch-size', values['batch-size']), compile: values.compile ?? false,
    device, seed: int('seed', values.seed), every: int('every', values.every), samples: int('samples', values.samples),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(parseCli(process.argv.slice(2)));
}
