// The CPU thread pool (runtime/threads.ts): big gemms split over 1 and 2 threads give the float64
// reference's values within the gemm tolerance and the same bits either way; compiled and eager steps
// agree across thread counts; a worker that dies is an Error naming it, and the pool restarts.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import v8 from 'node:v8';
import { afterAll, describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { gemm, makeGemm, PLAIN, RELAXED, kernelSupported } from '../runtime/gemm-wasm.ts';
import { pool } from '../runtime/pool.ts';

function reference(a: Float32Array, sam: number, sak: number, b: Float32Array, sbk: number, sbn: number, m: number, n: number, k: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let kk = 0; kk < k; kk++) {
    const av = a[i * sam + kk * sak];
    for (let j = 0; j < n; j++) c[i * n + j] += av * b[kk * sbk + j * sbn];
  }
  return c;
}

function operands(m: number, n: number, k: number, tb: boolean) {
  const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 1.3));
  const b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i * 0.7));
  const [sbk, sbn] = tb ? [1, k] : [n, 1];
  return { a, b, sbk, sbn };
}

function expectClose(c: Float32Array, ldc: number, want: Float64Array, m: number, n: number, k: number): void {
  let worst = 0;
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    const w = want[i * n + j];
    worst = Math.max(worst, Math.abs(c[i * ldc + j] - w) / (1e-5 * Math.sqrt(k) * (1 + Math.abs(w))));
  }
  expect(worst, 'worst error in units of the tolerance').toBeLessThanOrEqual(1);
}

const threadCounts = [1, 2];
const initial = kiln.getNumThreads();
afterAll(() => kiln.setNumThreads(initial));

describe('thread pool', () => {
  it('setNumThreads takes 1..64 and says what is wrong otherwise', () => {
    for (const bad of [0, -1, 1.5, 65, NaN]) {
      expect(() => kiln.setNumThreads(bad)).toThrow(/setNumThreads: n must be an integer from 1 to 64, got/);
    }
    kiln.setNumThreads(2);
    expect(kiln.getNumThreads()).toBe(2);
    kiln.setNumThreads(1);
    expect(kiln.getNumThreads()).toBe(1);
  });

  it('KILN_NUM_THREADS sets the default, and a bad value is an Error naming it', () => {
    const threadsOf = (value: string) => spawnSync(process.execPath, ['--import', 'tsx', '-e',
      "import('./runtime/threads.ts').then((t) => console.log('threads=' + t.getNumThreads()))"], {
      encoding: 'utf8', timeout: 60_000, cwd: resolve(import.meta.dirname, '..'), env: { ...process.env, KILN_NUM_THREADS: value },
    });
    const three = threadsOf('3');
    expect(three.stdout, three.stderr).toContain('threads=3');
    const bad = threadsOf('two');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("KILN_NUM_THREADS must be an integer from 1 to 64, got 'two'");
  });

  // Panels split (wide), row blocks split (a single panel), a transposed weight, ragged edges, k split
  // into segments (a small C over a long k: a weight gradient's shape; segments of uneven blocks).
  const cases: [string, number, number, number, boolean][] = [
    ['MLP layer, transposed weight', 128, 512, 784, true],
    ['tall, one panel: split by rows', 1030, 10, 300, false],
    ['ragged edges', 131, 257, 67, false],
    ['small C, long k: split along k', 30, 9, 9000, true],
  ];
  for (const [name, m, n, k, tb] of cases) {
    it(`gemm on 1 and 2 threads matches float64 and itself: ${name} (${m}x${k} @ ${k}x${n})`, () => {
      const { a, b, sbk, sbn } = operands(m, n, k, tb);
      const want = reference(a, k, 1, b, sbk, sbn, m, n, k);
      const results: Float32Array[] = [];
      for (const t of threadCounts) {
        kiln.setNumThreads(t);
        const { c, ldc } = gemm!(a, 0, k, 1, b, 0, sbk, sbn, m, n, k, true);
        expectClose(c, ldc, want, m, n, k);
        results.push(c.slice());
      }
      // Each thread computes whole output tiles in the same k order: the split changes no bit.
      expect(results[1]).toEqual(results[0]);
    });
  }

  it('the relaxed-SIMD kernel (f32x4.relaxed_madd) is chosen only where validated, and stays within the same tolerance', () => {
    // Node 20 has relaxed SIMD behind a V8 flag: off by default (the plain kernel runs), on here to test it.
    expect(kernelSupported(PLAIN)).toBe(true);
    expect(kernelSupported(RELAXED)).toBe(false);
    v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    expect(kernelSupported(RELAXED)).toBe(true);
    const [m, n, k] = [131, 72, 300];
    const { a, b, sbk, sbn } = operands(m, n, k, false);
    const want = reference(a, k, 1, b, sbk, sbn, m, n, k);
    for (const t of threadCounts) {
      kiln.setNumThreads(t);
      const { c, ldc } = makeGemm(RELAXED)!(a, 0, k, 1, b, 0, sbk, sbn, m, n, k, true);
      expectClose(c, ldc, want, m, n, k);
    }
  });

  it('a compiled MLP step gives the same losses and weights on 1 and 2 threads, and as eagerly', async () => {
    const run = async (threads: number, compiled: boolean) => {
      kiln.setNumThreads(threads);
      kiln.manualSeed(3);
      const model = new kiln.nn.Sequential(new kiln.nn.Linear(256, 512), new kiln.nn.ReLU(), new kiln.nn.Linear(512, 10));
      const opt = new kiln.optim.SGD(model.parameters(), { lr: 0.1 });
      const x = kiln.randn([128, 256]), y = kiln.randint(0, 10, [128]);
      const body = (xb: kiln.Tensor, yb: kiln.Tensor) => {
        const loss = kiln.F.crossEntropy(model.forward(xb), yb);
        loss.backward();
        opt.step();
        opt.zeroGrad();
        return loss;
      };
      const step = compiled ? kiln.compile(body) : null;
      const losses: number[] = [];
      for (let i = 0; i < 3; i++) losses.push(step ? await (await step(x, y)).item() : body(x, y).itemSync());
      return { losses, w: model.parameters()[0].dataSync() };
    };
    const one = await run(1, true), two = await run(2, true), eager = await run(2, false);
    expect(two.losses).toEqual(one.losses);
    expect(two.w).toEqual(one.w);
    eager.losses.forEach((l, i) => expect(Math.abs(l - one.losses[i])).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(l))));
    eager.w.forEach((v, i) => expect(Math.abs(v - one.w[i]), `w[${i}]`).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(v))));
  });

  it('a convolution big enough to split (its input unfolded by each thread into its own panels) gives the same bits on 1 and 2 threads, and matches float64', () => {
    // conv2 of PyTorch's MNIST Net on 4 images, padding 1 and stride 2 on one dim: 64 x 288 @ 288 x (4 x 13 x 24)
    const [N, C, H, W, O] = [4, 32, 26, 26, 64];
    const x = kiln.tensor(Float32Array.from({ length: N * C * H * W }, (_, i) => Math.sin(i * 0.37)), { shape: [N, C, H, W] });
    const w = kiln.tensor(Float32Array.from({ length: O * C * 9 }, (_, i) => Math.cos(i * 0.11) * 0.1), { shape: [O, C, 3, 3] });
    const outs = threadCounts.map((t) => { kiln.setNumThreads(t); return kiln.F.conv2d(x, w, null, { padding: [1, 0], stride: [2, 1] }).dataSync(); });
    expect(outs[1]).toEqual(outs[0]);
    const [OH, OW] = [13, 24], xs = x.dataSync(), ws = w.dataSync();
    for (const [n, o, y, xo] of [[0, 0, 0, 0], [3, 63, 12, 23], [1, 17, 5, 9], [2, 40, 0, 23]]) {
      let want = 0;
      for (let c = 0; c < C; c++) for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) {
        const iy = y * 2 + i - 1, ix = xo + j;
        if (iy >= 0 && iy < H) want += xs[((n * C + c) * H + iy) * W + ix] * ws[((o * C + c) * 3 + i) * 3 + j];
      }
      expect(Math.abs(outs[0][((n * O + o) * OH + y) * OW + xo] - want), `out[${n}, ${o}, ${y}, ${xo}]`).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want)));
    }
  });

  it("a convolution's gradients (the input's: a product scattered image by image; the weight's: split along k) give the same bits on 1 and 2 threads, and match float64", () => {
    // conv2 of PyTorch's MNIST Net on 9 images of 18 x 18 (an odd number: the threads get unequal
    // images; 9 blocks of k for the weight's gradient)
    const [N, C, H, W, O] = [9, 32, 18, 18, 64], OH = 16, OW = 16;
    const x = kiln.tensor(Float32Array.from({ length: N * C * H * W }, (_, i) => Math.sin(i * 0.37)), { shape: [N, C, H, W], requiresGrad: true });
    const w = kiln.tensor(Float32Array.from({ length: O * C * 9 }, (_, i) => Math.cos(i * 0.11) * 0.1), { shape: [O, C, 3, 3], requiresGrad: true });
    const g = kiln.tensor(Float32Array.from({ length: N * O * OH * OW }, (_, i) => Math.cos(i * 0.53)), { shape: [N, O, OH, OW] });
    const grads = threadCounts.map((t) => {
      kiln.setNumThreads(t);
      x.grad = null; w.grad = null;
      kiln.F.conv2d(x, w).backward(g);
      return [x.grad!.dataSync(), w.grad!.dataSync()];
    });
    expect(grads[1][0]).toEqual(grads[0][0]);
    expect(grads[1][1]).toEqual(grads[0][1]);
    const xs = x.dataSync(), ws = w.dataSync(), gs = g.dataSync();
    const gAt = (n: number, o: number, y: number, xo: number) => (y >= 0 && y < OH && xo >= 0 && xo < OW ? gs[((n * O + o) * OH + y) * OW + xo] : 0);
    for (const [n, c, y, xi] of [[0, 0, 0, 0], [8, 31, 17, 17], [2, 7, 5, 4], [4, 20, 0, 17]]) {
      let want = 0;
      for (let o = 0; o < O; o++) for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) want += gAt(n, o, y - i, xi - j) * ws[((o * C + c) * 3 + i) * 3 + j];
      expect(Math.abs(grads[0][0][((n * C + c) * H + y) * W + xi] - want), `x.grad[${n}, ${c}, ${y}, ${xi}]`).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want)) * 8);
    }
    for (const [o, c, i, j] of [[0, 0, 0, 0], [63, 31, 2, 2], [17, 5, 1, 2]]) {
      let want = 0;
      for (let n = 0; n < N; n++) for (let y = 0; y < OH; y++) for (let xo = 0; xo < OW; xo++) want += gAt(n, o, y, xo) * xs[((n * C + c) * H + y + i) * W + xo + j];
      expect(Math.abs(grads[0][1][((o * C + c) * 3 + i) * 3 + j] - want), `w.grad[${o}, ${c}, ${i}, ${j}]`).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want)) * 20);
    }
  });

  it("a compiled step's big elementwise kernels, reductions, gathers, scatters and convolution epilogues run in ranges on both threads, with the same bits as on one", async () => {
    // dropout (counter-based random numbers), a ReLU, a reduction keeping a dim, a gather, a convolution
    // with its bias and ReLU (and both gradients), max pooling (its gradient a scatter, split by rows),
    // and an in-place update reading a 0-d learning rate (a private scalar the pool copies into shared memory)
    const run = async (threads: number) => {
      kiln.setNumThreads(threads);
      kiln.manualSeed(5);
      const w = kiln.randn([300, 600]).requiresGrad_(), table = kiln.randn([1000, 300]);
      const cw = kiln.randn([32, 16, 3, 3]).mul(0.1).requiresGrad_(), cb = kiln.randn([32]).requiresGrad_(), img = kiln.randn([8, 16, 66, 66]);
      const lr = kiln.tensor(0.05);
      const idx = kiln.randint(0, 1000, [600]);
      const step = kiln.compile((x: kiln.Tensor) => {
        const h = kiln.F.dropout(x.matmul(w).relu(), 0.3, true);
        const c = kiln.F.maxPool2d(kiln.F.conv2d(img, cw, cb).relu(), 2); // max pooling's gradient: a scatter by rows
        const loss = h.sum(1).mul(table.index(idx).sum(0).mean()).mean().add(c.square().mean());
        loss.backward();
        kiln.noGrad(() => { w.sub_(w.grad!.mul(lr)); cw.sub_(cw.grad!.mul(lr)); cb.sub_(cb.grad!.mul(lr)); });
        w.grad = null; cw.grad = null; cb.grad = null;
        return loss;
      });
      const x = kiln.randn([400, 300]);
      const before = pool()!.splitRuns;
      const losses: number[] = [];
      for (let i = 0; i < 2; i++) losses.push(await (await step(x)).item());
      return { losses, w: w.dataSync(), cw: cw.dataSync(), split: pool()!.splitRuns - before };
    };
    const one = await run(1), two = await run(2);
    expect(one.split).toBe(0);
    expect(two.split).toBeGreaterThanOrEqual(4);
    expect(two.losses).toEqual(one.losses);
    expect(two.w).toEqual(one.w);
    expect(two.cw).toEqual(one.cw);
  });

  it('a worker that dies in a split kernel is an Error naming it, and the next call runs on a restarted pool', async () => {
    kiln.setNumThreads(2);
    const x = kiln.randn([512, 1024]);
    const step = kiln.compile((t: kiln.Tensor) => t.mul(3).relu().sum(1));
    const want = await (await step(x)).data();
    pool()!.injectFault(1);
    await expect(step(x)).rejects.toThrow(/kiln thread pool: worker 1 of 2 died \(exited with code 70\).*pool has restarted/);
    expect(await (await step(x)).data()).toEqual(want);
  });

  it('shrinking and growing the pool between calls keeps the results and blames no stopped worker', () => {
    const [m, n, k] = [128, 512, 300];
    const { a, b, sbk, sbn } = operands(m, n, k, false);
    kiln.setNumThreads(2);
    const want = gemm!(a, 0, k, 1, b, 0, sbk, sbn, m, n, k, true).c.slice();
    for (const t of [1, 2, 1, 2, 2, 1, 2]) {
      kiln.setNumThreads(t);
      expect(gemm!(a, 0, k, 1, b, 0, sbk, sbn, m, n, k, true).c.slice()).toEqual(want);
    }
  });

  it('a worker that dies is an Error naming it, and the next call runs on a restarted pool', () => {
    kiln.setNumThreads(2);
    const [m, n, k] = [128, 512, 784];
    const { a, b, sbk, sbn } = operands(m, n, k, true);
    const want = gemm!(a, 0, k, 1, b, 0, sbk, sbn, m, n, k, true).c.slice();
    pool()!.injectFault(1);
    expect(() => gemm!(a, 0, k, 1, b, 0, sbk, sbn, m, n, k, true)).toThrow(/kiln thread pool: worker 1 of 2 died \(exited with code 70\).*pool has restarted/);
    const again = gemm!(a, 0, k, 1, b, 0, sbk, sbn, m, n, k, true);
    expect(again.c.slice()).toEqual(want);
    expect(() => pool()!.injectFault(2)).toThrow(/no worker 2 \(workers are 1\.\.1\)/);
  });
});
