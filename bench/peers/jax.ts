// jax-js peer (@jax-js/jax): jit of value-and-grad plus the SGD update, on the
// wasm device (CPU) or the webgpu device. jax-js uses reference-counted
// ownership: every function consumes its Array arguments, `.ref` / tree.ref
// keeps one alive.
import { init, defaultDevice, jit, valueAndGrad, numpy as np, nn, lax, random, tree, type Device } from '@jax-js/jax';
import type { MlpData } from '../mlp-data.ts';
import { ADADELTA, CNN_PARAMS, permute, type CnnData, type CnnParam } from '../cnn-data.ts';

const inited = new Map<Device, boolean>();

export async function useDevice(d: Device): Promise<string> {
  if (!inited.has(d)) {
    const got = await init(d);
    inited.set(d, got.includes(d));
  }
  if (!inited.get(d)) throw new Error(`jax-js init('${d}') found no ${d} device`);
  defaultDevice(d);
  const threads = typeof Worker !== 'undefined' && typeof SharedArrayBuffer !== 'undefined';
  return d === 'wasm' ? `jax-js wasm, ${threads ? 'multi-threaded' : 'single-threaded (no Web Workers in Node)'}` : `jax-js ${d}`;
}

/** Dose epoch as one jit: value-and-grad of the summed squared error over the
 * 3 samples (identical to accumulating the 3 per-sample gradients), then SGD. */
export async function doseEpoch(device: Device = 'wasm'): Promise<{ run: () => Promise<number>; note: string }> {
  const note = await useDevice(device);
  const epochLoss = (fb: np.Array, x: np.Array, y: np.Array) => {
    const top = nn.relu(x.ref.mul(1.7).add(-0.85)).mul(-40.8);
    const bottom = nn.relu(x.mul(12.6).add(0.0)).mul(2.7);
    const out = nn.relu(top.add(bottom).add(fb));
    const err = out.sub(y);
    return np.sum(err.ref.mul(err));
  };
  const step = jit((fb: np.Array, x: np.Array, y: np.Array) => {
    const [loss, g] = valueAndGrad(epochLoss)(fb.ref, x, y);
    return [fb.sub(g.mul(0.1)), loss] as [np.Array, np.Array];
  });
  let fb = np.array(0.0);
  const x = np.array([0, 0.5, 1]);
  const y = np.array([0, 1, 0]);
  const run = async () => {
    const [fb2, loss] = step(fb, x.ref, y.ref);
    fb = fb2;
    return (await loss.data())[0]!;
  };
  return { run, note: note + ', whole epoch vectorized inside one jit' };
}

type MlpParams = { w1: np.Array; b1: np.Array; w2: np.Array; b2: np.Array; w3: np.Array; b3: np.Array };

export async function mlpStep(device: Device, d: MlpData): Promise<{ run: () => Promise<number>; note: string }> {
  const note = await useDevice(device);
  const s = d.sizes;
  const lossFn = (p: MlpParams, x: np.Array, y1h: np.Array) => {
    const h1 = nn.relu(np.matmul(x, p.w1).add(p.b1));
    const h2 = nn.relu(np.matmul(h1, p.w2).add(p.b2));
    const logits = np.matmul(h2, p.w3).add(p.b3);
    return np.sum(nn.logSoftmax(logits, -1).mul(y1h)).mul(-1 / d.batch);
  };
  const step = jit((p: MlpParams, x: np.Array, y1h: np.Array) => {
    const [loss, g] = valueAndGrad(lossFn)(tree.ref(p), x, y1h);
    const next = tree.map((a: np.Array, ga: np.Array) => a.sub(ga.mul(0.1)), p, g) as MlpParams;
    return [next, loss] as [MlpParams, np.Array];
  });
  let p: MlpParams = {
    w1: np.array(d.w1, { shape: [s[0], s[1]] }), b1: np.array(d.b1),
    w2: np.array(d.w2, { shape: [s[1], s[2]] }), b2: np.array(d.b2),
    w3: np.array(d.w3, { shape: [s[2], s[3]] }), b3: np.array(d.b3),
  };
  const x = np.array(d.x, { shape: [d.batch, s[0]] });
  const oh = new Float32Array(d.batch * s[3]);
  for (let i = 0; i < d.batch; i++) oh[i * s[3] + d.y[i]!] = 1;
  const y1h = np.array(oh, { shape: [d.batch, s[3]] });
  const run = async () => {
    const [next, loss] = step(p, x.ref, y1h.ref);
    p = next;
    return (await loss.data())[0]!;
  };
  return { run, note };
}

type CnnParams = Record<CnnParam, np.Array>;

/** One training step of PyTorch's MNIST Net in one jit: NCHW convolutions (lax.conv, PyTorch's
 * layouts), 2×2 max pooling as a reshape and a max, dropout from keys passed in per step,
 * log-softmax + NLL, and Adadelta written out as torch.optim.Adadelta computes it (jax-js has no
 * optimizer library). Linear weights are stored [in, out]. */
export async function cnnStep(device: Device, d: CnnData): Promise<{ run: () => Promise<number>; note: string }> {
  const note = await useDevice(device);
  const B = d.batch;
  const dropout = (x: np.Array, key: np.Array, rate: number) => {
    const keep = random.bernoulli(key, 1 - rate, x.shape);
    return np.where(keep, x.mul(1 / (1 - rate)), 0);
  };
  const lossFn = (p: CnnParams, x: np.Array, y1h: np.Array, k1: np.Array, k2: np.Array) => {
    let h = nn.relu(lax.conv(x, p['conv1.weight'], [1, 1], 'VALID').add(p['conv1.bias'].reshape([1, 32, 1, 1])));
    h = nn.relu(lax.conv(h, p['conv2.weight'], [1, 1], 'VALID').add(p['conv2.bias'].reshape([1, 64, 1, 1])));
    h = np.max(h.reshape([B, 64, 12, 2, 12, 2]), [3, 5]);
    h = dropout(h, k1, 0.25).reshape([B, 9216]);
    h = dropout(nn.relu(np.matmul(h, p['fc1.weight']).add(p['fc1.bias'])), k2, 0.5);
    const logits = np.matmul(h, p['fc2.weight']).add(p['fc2.bias']);
    return np.sum(nn.logSoftmax(logits, -1).mul(y1h)).mul(-1 / B);
  };
  const { lr, rho, eps } = ADADELTA;
  const step = jit((p: CnnParams, sq: CnnParams, acc: CnnParams, x: np.Array, y1h: np.Array, k1: np.Array, k2: np.Array) => {
    const [loss, g] = valueAndGrad(lossFn)(tree.ref(p), x, y1h, k1, k2);
    const p2 = {} as CnnParams, sq2 = {} as CnnParams, acc2 = {} as CnnParams;
    for (const name of CNN_PARAMS) {
      const gi = g[name];
      const s = sq[name].mul(rho).add(gi.ref.mul(gi.ref).mul(1 - rho));
      const delta = np.sqrt(acc[name].ref.add(eps)).div(np.sqrt(s.ref.add(eps))).mul(gi);
      acc2[name] = acc[name].mul(rho).add(delta.ref.mul(delta.ref).mul(1 - rho));
      sq2[name] = s;
      p2[name] = p[name].sub(delta.mul(lr));
    }
    return [p2, sq2, acc2, loss] as [CnnParams, CnnParams, CnnParams, np.Array];
  });
  const asJax = (name: CnnParam) => {
    const a = d.params[name];
    return a.shape.length === 2 ? np.array(permute(a.data, a.shape, [1, 0]), { shape: [a.shape[1]!, a.shape[0]!] }) : np.array(a.data, { shape: a.shape });
  };
  const zeros = () => Object.fromEntries(CNN_PARAMS.map((n) => [n, np.zeros(d.params[n].shape.length === 2 ? [...d.params[n].shape].reverse() : d.params[n].shape)])) as CnnParams;
  let p = Object.fromEntries(CNN_PARAMS.map((n) => [n, asJax(n)])) as CnnParams;
  let sq = zeros(), acc = zeros();
  const x = np.array(d.x, { shape: [B, 1, 28, 28] });
  const oh = new Float32Array(B * 10);
  for (let i = 0; i < B; i++) oh[i * 10 + d.y[i]!] = 1;
  const y1h = np.array(oh, { shape: [B, 10] });
  // random.key(seed) is this [0, seed] pair, but built on the device it reads back synchronously,
  // which jax-js's webgpu device cannot do in Node.
  const key = (seed: number) => np.array(Uint32Array.from([0, seed]), { dtype: np.uint32 });
  let i = 0;
  const run = async () => {
    const [p2, sq2, acc2, loss] = step(p, sq, acc, x.ref, y1h.ref, key(2 * i), key(2 * i + 1));
    i++;
    p = p2; sq = sq2; acc = acc2;
    return (await loss.data())[0]!;
  };
  return { run, note: `${note}, dropout keys passed in per step` };
}

export async function matmul(device: Device, n: number, a: Float32Array<ArrayBuffer>, b: Float32Array<ArrayBuffer>): Promise<{ run: () => Promise<void>; note: string; check: () => Promise<Float32Array> }> {
  const note = await useDevice(device);
  const A = np.array(a, { shape: [n, n] });
  const B = np.array(b, { shape: [n, n] });
  const mm = jit((x: np.Array, y: np.Array) => np.matmul(x, y));
  const run = async () => {
    const c = mm(A.ref, B.ref);
    await c.blockUntilReady();
    c.dispose();
  };
  const check = async () => (await mm(A.ref, B.ref).data()) as Float32Array;
  return { run, note, check };
}
