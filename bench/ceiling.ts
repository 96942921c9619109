// The machine's WebAssembly SIMD128 multiply-add ceiling, measured rather than assumed: a tight loop of
// 12 independent f32x4 mul + add chains (no loads, no dependencies between chains) on 1 thread, and the
// same loop on every thread at once (worker_threads) for the all-core figure.
import { Worker } from 'node:worker_threads';

const CHAINS = 12;

/** `peak(n)`: n iterations of acc_i = acc_i + x * x for CHAINS accumulators; returns a lane so nothing is dead. */
function peakModule(): Uint8Array<ArrayBuffer> {
  const code: number[] = [];
  const e = (...x: number[]) => code.push(...x);
  const accs = Array.from({ length: CHAINS }, (_, i) => 2 + i); // local 0: n, local 1: x, then the chains
  e(0x43, 0x00, 0x00, 0x80, 0x3f, 0xfd, 0x13, 0x21, 1); // x = f32x4.splat(1.0)
  e(0x03, 0x40); // loop
  for (const a of accs) e(0x20, a, 0x20, 1, 0x20, 1, 0xfd, 0xe6, 0x01, 0xfd, 0xe4, 0x01, 0x21, a);
  e(0x20, 0, 0x41, 0x01, 0x6b, 0x22, 0, 0x0d, 0x00, 0x0b); // n -= 1; br_if n; end
  for (const a of accs) e(0x20, a);
  for (let i = 1; i < CHAINS; i++) e(0xfd, 0xe4, 0x01);
  e(0xfd, 0x1f, 0x00, 0x0b); // f32x4.extract_lane 0; end
  const body = [0x01, CHAINS + 1, 0x7b, ...code];
  const leb = (n: number) => { const o: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; o.push(b); } while (n); return o; };
  const fn = [...leb(body.length), ...body];
  const name = [...'peak'].map((c) => c.charCodeAt(0));
  return Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 6, 1, 0x60, 1, 0x7f, 1, 0x7d, 3, 2, 1, 0, 7, 8, 1, 4, ...name, 0, 0,
    10, ...leb(fn.length + 1), 1, ...fn]);
}

const FLOP_PER_ITER = CHAINS * 4 * 2;

/** Milliseconds of this process's CPU time (all its threads) per call of `fn`, best of `reps` runs of `iters` calls. */
export async function cpuMsPerCall(fn: () => unknown, iters: number, reps = 5): Promise<number> {
  const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = cpu();
    for (let i = 0; i < iters; i++) await fn();
    best = Math.min(best, (cpu() - t) / iters);
  }
  return best;
}

/**
 * The one-thread ceiling by CPU time rather than wall time: on a shared machine the thread is
 * descheduled part of the time, which wall time counts and CPU time does not.
 */
export async function simdCeilingCpuTime(): Promise<number> {
  const peak = new WebAssembly.Instance(new WebAssembly.Module(peakModule())).exports.peak as (n: number) => number;
  const iters = 2e6;
  peak(1e5);
  return (iters * FLOP_PER_ITER) / (await cpuMsPerCall(() => peak(iters), 1, 5)) / 1e6;
}

/** GFLOP/s of `threads` threads each running the loop for about `ms` milliseconds, best of `repeats`. */
export async function simdCeiling(threads: number, ms = 200, repeats = 5): Promise<number> {
  const bytes = peakModule();
  const peak = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.peak as (n: number) => number;
  peak(1e5);
  let t = performance.now(); peak(1e6);
  const iters = Math.max(1e5, Math.round((1e6 * ms) / Math.max(performance.now() - t, 1e-3)));
  // Workers wait on flag[0] (a round number), run the loop, and count themselves done in flag[1].
  const flag = new Int32Array(new SharedArrayBuffer(8));
  const workers = Array.from({ length: threads - 1 }, () => new Worker(`
    const { workerData: { bytes, flag, iters } } = require('node:worker_threads');
    const peak = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.peak;
    peak(1e5);
    for (let round = 1; ; round++) { Atomics.wait(flag, 0, round - 1); if (flag[0] < 0) break; peak(iters); Atomics.add(flag, 1, 1); Atomics.notify(flag, 1); }
  `, { eval: true, workerData: { bytes, flag, iters } }));
  let best = 0;
  for (let r = 1; r <= repeats; r++) {
    Atomics.store(flag, 1, 0);
    t = performance.now();
    Atomics.store(flag, 0, r); Atomics.notify(flag, 0);
    peak(iters);
    for (let done; (done = Atomics.load(flag, 1)) < threads - 1;) Atomics.wait(flag, 1, done, 1000);
    best = Math.max(best, (threads * iters * FLOP_PER_ITER) / ((performance.now() - t) * 1e6));
  }
  Atomics.store(flag, 0, -1); Atomics.notify(flag, 0);
  await Promise.all(workers.map((w) => w.terminate()));
  return best;
}
