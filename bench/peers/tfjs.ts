// TensorFlow.js peer: cpu (pure JS), wasm and webgpu backends.
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { MlpData } from '../mlp-data.ts';
import { ADADELTA, permute, type CnnData } from '../cnn-data.ts';

export type TfBackend = 'cpu' | 'wasm' | 'webgpu';

// tfjs prints a banner recommending tfjs-node on the first tensor in Node; drop just that one.
const warn = console.warn.bind(console);
console.warn = (...args: unknown[]) => {
  if (typeof args[0] === 'string' && args[0].includes('tfjs-node')) return;
  warn(...args);
};

const loaded = new Set<TfBackend>(['cpu']);

/** Registers and selects a backend; returns a note describing it. */
export async function useBackend(b: TfBackend): Promise<string> {
  if (!loaded.has(b)) {
    if (b === 'wasm') {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const req = createRequire(import.meta.url);
      const dir = path.dirname(req.resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist/';
      wasm.setWasmPaths(dir);
    } else if (b === 'webgpu') {
      await import('@tensorflow/tfjs-backend-webgpu');
    }
    loaded.add(b);
  }
  const ok = await tf.setBackend(b);
  if (!ok || tf.getBackend() !== b) throw new Error(`tf.setBackend('${b}') failed`);
  await tf.ready();
  if (b === 'wasm') {
    const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
    const mt = tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT');
    return `tfjs ${tf.version.tfjs}, wasm ${simd ? 'SIMD' : 'no SIMD'}, ${mt ? 'multi-threaded' : 'single-threaded'}`;
  }
  return `tfjs ${tf.version.tfjs}`;
}

/** One dose epoch: per sample tf.variableGrads (forward, squared error,
 * backward), gradients summed, then SGD by hand and the sum reset. */
export async function doseEpoch(): Promise<() => number> {
  await useBackend('cpu');
  const s = (v: number) => tf.keep(tf.scalar(v));
  const w00 = s(1.7), b00 = s(-0.85), w01 = s(-40.8);
  const w10 = s(12.6), b10 = s(0.0), w11 = s(2.7);
  const finalBias = tf.variable(tf.scalar(0.0), true, 'final_bias');
  const inputs = tf.keep(tf.tensor1d([0, 0.5, 1]));
  const labels = [0, 1, 0].map(s);
  const lr = s(0.1);
  const forward = (x: tf.Tensor) => {
    const top = tf.relu(tf.add(tf.mul(x, w00), b00)).mul(w01);
    const bottom = tf.relu(tf.add(tf.mul(x, w10), b10)).mul(w11);
    return tf.relu(tf.add(tf.add(top, bottom), finalBias));
  };
  return () =>
    tf.tidy(() => {
      const xs = tf.unstack(inputs);
      let total = 0;
      let acc: tf.Tensor | null = null;
      for (let i = 0; i < 3; i++) {
        const { value, grads } = tf.variableGrads(
          () => tf.square(tf.sub(forward(xs[i]!), labels[i]!)) as tf.Scalar,
          [finalBias],
        );
        total += value.dataSync()[0]!;
        const g = grads['final_bias']!;
        acc = acc ? tf.add(acc, g) : g;
      }
      finalBias.assign(tf.sub(finalBias, tf.mul(acc!, lr)) as tf.Scalar);
      return total;
    });
}

/** MLP training step with optimizer.minimize; returns the loss value. */
export async function mlpStep(b: TfBackend, d: MlpData): Promise<{ step: () => Promise<number>; note: string }> {
  const note = await useBackend(b);
  const vars = [
    tf.variable(tf.tensor2d(d.w1, [d.sizes[0], d.sizes[1]])),
    tf.variable(tf.tensor1d(d.b1)),
    tf.variable(tf.tensor2d(d.w2, [d.sizes[1], d.sizes[2]])),
    tf.variable(tf.tensor1d(d.b2)),
    tf.variable(tf.tensor2d(d.w3, [d.sizes[2], d.sizes[3]])),
    tf.variable(tf.tensor1d(d.b3)),
  ];
  const [w1, b1, w2, b2, w3, b3] = vars as [tf.Variable, tf.Variable, tf.Variable, tf.Variable, tf.Variable, tf.Variable];
  const x = tf.keep(tf.tensor2d(d.x, [d.batch, d.sizes[0]]));
  const y = tf.keep(tf.oneHot(tf.tensor1d(d.y, 'int32'), d.sizes[3]));
  const opt = tf.train.sgd(0.1);
  const step = async () => {
    const loss = opt.minimize(
      () => {
        const h1 = tf.relu(tf.add(tf.matMul(x, w1), b1));
        const h2 = tf.relu(tf.add(tf.matMul(h1, w2), b2));
        const logits = tf.add(tf.matMul(h2, w3), b3);
        return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
      },
      true,
      vars,
    )!;
    const v = (await loss.data())[0]!;
    loss.dispose();
    return v;
  };
  return { step, note };
}

/** One training step of PyTorch's MNIST Net (NHWC, as tfjs convolves), Adadelta; returns the loss value. */
export async function cnnStep(b: TfBackend, d: CnnData): Promise<{ step: () => Promise<number>; note: string }> {
  const note = await useBackend(b);
  const p = d.params;
  // PyTorch's weights in tfjs's layouts: conv [kh, kw, in, out], dense [in, out]. fc1's input is
  // flattened NHWC here ((h, w, c) order) against PyTorch's NCHW ((c, h, w)), so its rows are
  // reordered too and the step computes exactly PyTorch's function.
  const conv = (name: 'conv1.weight' | 'conv2.weight') => tf.variable(tf.tensor4d(permute(p[name].data, p[name].shape, [2, 3, 1, 0]), [3, 3, p[name].shape[1]!, p[name].shape[0]!]));
  const vars = [
    conv('conv1.weight'), tf.variable(tf.tensor1d(p['conv1.bias'].data)),
    conv('conv2.weight'), tf.variable(tf.tensor1d(p['conv2.bias'].data)),
    tf.variable(tf.tensor2d(permute(p['fc1.weight'].data, [128, 64, 12, 12], [2, 3, 1, 0]), [9216, 128])), tf.variable(tf.tensor1d(p['fc1.bias'].data)),
    tf.variable(tf.tensor2d(permute(p['fc2.weight'].data, [10, 128], [1, 0]), [128, 10])), tf.variable(tf.tensor1d(p['fc2.bias'].data)),
  ];
  const [c1, c1b, c2, c2b, f1, f1b, f2, f2b] = vars as [tf.Variable<tf.Rank.R4>, tf.Variable, tf.Variable<tf.Rank.R4>, tf.Variable, tf.Variable, tf.Variable, tf.Variable, tf.Variable];
  // [batch, 1, 28, 28] and [batch, 28, 28, 1] are the same numbers in memory (one channel).
  const x = tf.keep(tf.tensor4d(d.x, [d.batch, 28, 28, 1]));
  const y = tf.keep(tf.oneHot(tf.tensor1d(d.y, 'int32'), 10));
  const opt = tf.train.adadelta(ADADELTA.lr, ADADELTA.rho, ADADELTA.eps);
  const step = async () => {
    const loss = opt.minimize(
      () => {
        let h: tf.Tensor = tf.relu(tf.add(tf.conv2d(x, c1, 1, 'valid'), c1b));
        h = tf.relu(tf.add(tf.conv2d(h as tf.Tensor4D, c2, 1, 'valid'), c2b));
        h = tf.dropout(tf.maxPool(h as tf.Tensor4D, 2, 2, 'valid'), 0.25).reshape([d.batch, 9216]);
        h = tf.dropout(tf.relu(tf.add(tf.matMul(h, f1), f1b)), 0.5);
        const logp = tf.logSoftmax(tf.add(tf.matMul(h, f2), f2b));
        return tf.neg(tf.mean(tf.sum(tf.mul(logp, y), 1))) as tf.Scalar;
      },
      true,
      vars,
    )!;
    const v = (await loss.data())[0]!;
    loss.dispose();
    return v;
  };
  return { step, note };
}

/** n×n matmul on the given backend; the result is read back (one element's worth
 * of work is negligible next to the product). */
export async function matmul(b: TfBackend, n: number, a: Float32Array, bm: Float32Array): Promise<{ run: () => Promise<void>; note: string; check: () => Promise<Float32Array> }> {
  const note = await useBackend(b);
  const A = tf.keep(tf.tensor2d(a, [n, n]));
  const B = tf.keep(tf.tensor2d(bm, [n, n]));
  const run = async () => {
    const c = tf.matMul(A, B);
    // Reading one element forces the whole product; slice is tiny.
    const one = c.slice([n - 1, n - 1], [1, 1]);
    await one.data();
    one.dispose();
    c.dispose();
  };
  const check = async () => {
    const c = tf.matMul(A, B);
    const v = (await c.data()) as Float32Array;
    c.dispose();
    return v;
  };
  return { run, note, check };
}

export function disposeAll(): void {
  tf.disposeVariables();
}
