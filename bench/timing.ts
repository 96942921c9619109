// Shared timing and table printing for the kiln benchmarks.
//
// Protocol (same for every row, every framework):
//   1. The first call is timed on its own ("first call": includes tracing /
//      compiling / kernel or pipeline creation where a framework does that).
//   2. Warm-up: more calls, untimed, for `warmupMs` (at least `minWarmup` calls).
//   3. Timed samples: each sample runs `k` iterations back to back, where k is
//      picked so that a sample lasts at least ~`sampleMs` (fast benchmarks are not
//      dominated by timer resolution). Sampling stops at `budgetMs` or
//      `maxSamples`, after at least `minSamples` samples.
//   4. Reported: the median over samples of (sample time / k).
// Every iteration must finish its work before it returns (read back the loss or
// wait on the device), so asynchronous frameworks cannot hide work.

import { mulberry32 } from '../data/random.ts';

export interface MeasureOptions {
  warmupMs?: number;
  minWarmup?: number;
  sampleMs?: number;
  budgetMs?: number;
  minSamples?: number;
  maxSamples?: number;
}

export interface Measurement {
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** Timed iterations in total (samples × k). */
  iters: number;
  samples: number;
  firstCallMs: number;
  /** What the first call returned, when it was a number (a loss): a sanity check across frameworks. */
  firstValue?: number;
}

const now = (): number => performance.now();

export async function measure(
  fn: () => unknown | Promise<unknown>,
  opts: MeasureOptions = {},
): Promise<Measurement> {
  const warmupMs = opts.warmupMs ?? 500;
  const minWarmup = opts.minWarmup ?? 2;
  const sampleMs = opts.sampleMs ?? 2;
  const budgetMs = opts.budgetMs ?? 3000;
  const minSamples = opts.minSamples ?? 5;
  const maxSamples = opts.maxSamples ?? 200;

  let t0 = now();
  const v = await fn();
  const firstCallMs = now() - t0;

  // Warm-up, and estimate the per-iteration time from it.
  let warm = 0;
  t0 = now();
  // A very slow iteration (seconds) cuts the warm-up short and takes fewer samples,
  // so one slow row cannot blow the benchmark's time budget.
  while ((warm < minWarmup || now() - t0 < warmupMs) && !(warm >= 1 && now() - t0 > budgetMs / 3)) {
    await fn();
    warm++;
  }
  const estimate = warm ? (now() - t0) / warm : firstCallMs;
  const k = Math.max(1, Math.ceil(sampleMs / Math.max(estimate, 1e-6)));
  const needSamples = estimate * minSamples > 2 * budgetMs ? Math.min(minSamples, 3) : minSamples;

  const perIter: number[] = [];
  const start = now();
  while (
    perIter.length < needSamples ||
    (perIter.length < maxSamples && now() - start < budgetMs)
  ) {
    const s = now();
    for (let i = 0; i < k; i++) await fn();
    perIter.push((now() - s) / k);
  }
  const sorted = [...perIter].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianMs = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return {
    medianMs,
    minMs: sorted[0]!,
    maxMs: sorted[sorted.length - 1]!,
    iters: perIter.length * k,
    samples: perIter.length,
    firstCallMs,
    firstValue: typeof v === 'number' ? v : undefined,
  };
}

/** Median/first-call numbers measured elsewhere (the PyTorch subprocess) come in as the same shape. */
export type ExternalMeasurement = Measurement;

export interface Row {
  name: string;
  /** Median time per iteration in ms, or null when the row did not run. */
  ms: number | null;
  firstCallMs?: number | null;
  /** Fastest sample (per iteration), kept in results.json: less sensitive to a busy machine than the median. */
  minMs?: number | null;
  /** Loss returned by the first call (sanity check: all frameworks should agree roughly). */
  firstValue?: number | null;
  iters?: number;
  /** ratio = ms / baseline ms; filled in by finishTable. */
  ratio?: number | null;
  /** Marks the baseline row of the ratio column. */
  baseline?: boolean;
  /** Extra column for throughput benchmarks (GFLOP/s). */
  gflops?: number | null;
  note?: string;
}

export interface Table {
  id: string;
  title: string;
  unit: 'us' | 'ms';
  rows: Row[];
  notes: string[];
  /** Name of the row used as the ratio baseline ('' when none ran). */
  baseline: string;
  showGflops?: boolean;
  /** Show the first call's loss as a column. */
  showFirstValue?: boolean;
  ratioLabel?: string;
  /** Average cores' worth of CPU other processes used while this benchmark ran. */
  otherCores?: number;
  /** When this table was measured, and the repository commit it measured (partial runs merge into results.json). */
  date?: string;
  kilnCommit?: string;
}

export function rowFrom(name: string, m: Measurement, note?: string): Row {
  return { name, ms: m.medianMs, minMs: m.minMs, firstCallMs: m.firstCallMs, firstValue: m.firstValue ?? null, iters: m.iters, note };
}

export function skipped(name: string, note: string): Row {
  return { name, ms: null, note };
}

export function errorMessage(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const line = msg.split('\n')[0] ?? '';
  return line.length > 140 ? line.slice(0, 137) + '...' : line;
}

/** Runs `body`, turning a thrown error into a skipped row that says what failed. */
export async function tryRow(name: string, body: () => Promise<Row>): Promise<Row> {
  try {
    return await body();
  } catch (e) {
    return skipped(name, `failed: ${errorMessage(e)}`);
  }
}

/** Fills the ratio column: row time / time of the first preferred baseline row that ran. */
export function finishTable(t: Table, baselinePreference: string[], fallback: string[] = []): Table {
  let base: Row | undefined;
  for (const name of baselinePreference) {
    base = t.rows.find((r) => r.name === name && r.ms !== null);
    if (base) break;
  }
  if (!base) {
    for (const name of fallback) {
      base = t.rows.find((r) => r.name === name && r.ms !== null);
      if (base) {
        t.notes.push(`no kiln row ran, so ratios are against ${name} instead`);
        break;
      }
    }
  }
  t.baseline = base?.name ?? '';
  for (const r of t.rows) {
    r.baseline = r === base;
    r.ratio = base && r.ms !== null && base.ms ? r.ms / base.ms : null;
  }
  return t;
}

function fmtTime(ms: number | null | undefined, unit: 'us' | 'ms'): string {
  if (ms === null || ms === undefined) return '-';
  if (unit === 'us') {
    const us = ms * 1000;
    return us >= 100 ? us.toFixed(0) + ' µs' : us.toFixed(1) + ' µs';
  }
  if (ms >= 1000) return (ms / 1000).toFixed(2) + ' s';
  return (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2)) + ' ms';
}

function fmtFirst(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  if (ms >= 1000) return (ms / 1000).toFixed(2) + ' s';
  return ms >= 10 ? ms.toFixed(0) + ' ms' : ms.toFixed(2) + ' ms';
}

function fmtRatio(r: number | null | undefined): string {
  if (r === null || r === undefined) return '-';
  return (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)) + '×';
}

export function formatTable(t: Table): string {
  if (t.rows.length === 0) return [`## ${t.title}`, '', ...t.notes.map((n) => `note: ${n}`)].join('\n');
  const head = ['', 'median/iter', 'first call', 'iters'];
  if (t.showFirstValue) head.push('1st loss');
  if (t.showGflops) head.push('GFLOP/s');
  head.push(t.ratioLabel ?? (t.baseline ? `÷ ${t.baseline}` : 'ratio'), 'note');
  const body = t.rows.map((r) => {
    const cells = [
      r.name + (r.baseline ? ' *' : ''),
      fmtTime(r.ms, t.unit),
      fmtFirst(r.firstCallMs),
      r.iters !== undefined && r.ms !== null ? String(r.iters) : '-',
    ];
    if (t.showFirstValue) cells.push(r.firstValue === null || r.firstValue === undefined ? '-' : r.firstValue.toPrecision(5));
    if (t.showGflops) cells.push(r.gflops ? r.gflops.toFixed(1) : '-');
    cells.push(fmtRatio(r.ratio), r.note ?? '');
    return cells;
  });
  const all = [head, ...body];
  const widths = head.map((_, i) => Math.max(...all.map((row) => [...(row[i] ?? '')].length)));
  const pad = (s: string, w: number, right: boolean) => {
    const n = w - [...s].length;
    return right ? ' '.repeat(n) + s : s + ' '.repeat(n);
  };
  const line = (row: string[]) =>
    row
      .map((c, i) => pad(c, widths[i]!, i > 0 && i < row.length - 1))
      .join('  ')
      .trimEnd();
  const out = [`## ${t.title}`, '', line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  if (t.baseline) out.push('', `* ratio baseline: ${t.baseline} (ratio = row time / baseline time; < 1 is faster than the baseline)`);
  else out.push('', 'no baseline row ran, so no ratios');
  for (const n of t.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

/** Deterministic PRNG (kiln's mulberry32) so every framework sees the same random data. */
export const rng = mulberry32;

export function uniformArray(n: number, lo: number, hi: number, next: () => number): Float32Array<ArrayBuffer> {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * next();
  return a;
}
