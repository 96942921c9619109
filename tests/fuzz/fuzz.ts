// The differential fuzzer's driver: runs each generated program eagerly, compiled and compiled
// unfused (fuse: false), compares everything the program leaves behind, shrinks a failing program
// to a minimal one and groups failures into classes by what went wrong.

import { compare, generate, print, run, type Device, type Mode, type Observed, type Program } from './program.ts';

export type Outcome =
  | { kind: 'ok' }
  /** eager itself threw: the program is not a valid PyTorch program (e.g. an in-place write to a saved tensor) */
  | { kind: 'invalid'; error: string }
  | { kind: 'mismatch'; mode: Mode; detail: string }
  | { kind: 'crash'; mode: Mode; error: string };

const message = (e: unknown): string => (e instanceof Error ? `${e.name === 'Error' ? '' : e.name + ': '}${e.message}` : String(e));

/** Runs one program in every mode and reports the first disagreement with eager execution. */
export async function check(p: Program, device: Device): Promise<Outcome> {
  let eager: Observed;
  try {
    eager = await run(p, 'eager', device);
  } catch (e) {
    return { kind: 'invalid', error: message(e) };
  }
  for (const mode of ['compiled', 'unfused'] as const) {
    let got: Observed;
    try {
      got = await run(p, mode, device);
    } catch (e) {
      return { kind: 'crash', mode, error: message(e) };
    }
    const diff = compare(p, eager, got);
    if (diff) return { kind: 'mismatch', mode, detail: diff };
  }
  return { kind: 'ok' };
}

/** What makes two failures "the same" while shrinking: kind, mode, and the error without its numbers. */
function failureKey(o: Outcome): string | null {
  if (o.kind === 'mismatch') return `mismatch:${o.mode}`;
  if (o.kind === 'crash') return `crash:${o.mode}:${normalize(o.error)}`;
  return null;
}
const normalize = (msg: string): string => msg.replace(/\[[^\]]*\]/g, '[..]').replace(/-?\d+(\.\d+)?/g, 'N').replace(/\s+/g, ' ').slice(0, 120);

/** Smaller variants of `p`: fewer calls, returns, statements (with what depends on them) and inits. */
function* variants(p: Program): Generator<Program> {
  if (p.calls > 1) yield { ...p, calls: 1 };
  for (let i = 0; i < p.returns.length; i++) yield { ...p, returns: p.returns.filter((_, j) => j !== i) };
  for (let i = p.stmts.length - 1; i >= 0; i--) {
    const gone = new Set<number>();
    const stmts = p.stmts.filter((s, j) => {
      const drop = j === i || s.refs.some((r) => gone.has(r));
      if (drop && s.id >= 0) gone.add(s.id);
      return !drop;
    });
    yield withoutUnused({ ...p, stmts, returns: p.returns.filter((r) => !gone.has(r)) });
  }
  // Bypass a statement: its first operand stands in for its result where shapes allow.
  for (let i = p.stmts.length - 1; i >= 0; i--) {
    const s = p.stmts[i];
    if (!s.out || !s.refs.length) continue;
    const src = s.refs[0];
    const info = p.stmts.find((t) => t.id === src)?.out ?? p.inits.find((x) => x.id === src);
    if (!info || info.dtype !== s.out.dtype || info.shape.join() !== s.out.shape.join()) continue;
    const sub = (r: number) => (r === s.id ? src : r);
    const stmts = p.stmts.filter((_, j) => j !== i).map((t) => ({ ...t, refs: t.refs.map(sub) }));
    yield withoutUnused({ ...p, stmts, returns: [...new Set(p.returns.map(sub))] });
  }
  if (p.optimizer && p.optimizer.kind !== 'SGD') yield { ...p, optimizer: { ...p.optimizer, kind: 'SGD', momentum: 0 } };
  if (p.optimizer?.momentum) yield { ...p, optimizer: { ...p.optimizer, momentum: 0 } };
  for (let i = 0; i < p.inits.length; i++) {
    const x = p.inits[i];
    if (x.dtype === 'float32' && x.data.some((v) => v !== 1)) yield { ...p, inits: p.inits.map((y, j) => (j === i ? { ...y, data: y.data.map(() => 1) } : y)) };
  }
}

function withoutUnused(p: Program): Program {
  const used = new Set<number>([...p.returns, ...p.stmts.flatMap((s) => s.refs)]);
  const usesOpt = p.stmts.some((s) => s.op === 'step' || s.op === 'zeroGrad');
  return {
    ...p,
    inits: p.inits.filter((x) => used.has(x.id) || (usesOpt && x.role === 'param')),
    optimizer: usesOpt ? p.optimizer : null,
  };
}

/** Shrinks `p` while it still fails the same way; returns the smallest failing program and its outcome. */
export async function shrink(p: Program, outcome: Outcome, device: Device, budget = 400): Promise<{ program: Program; outcome: Outcome }> {
  const key = failureKey(outcome);
  let best = p, bestOutcome = outcome;
  let tries = 0;
  for (let progress = true; progress && tries < budget;) {
    progress = false;
    for (const v of variants(best)) {
      if (++tries > budget) break;
      const o = await check(v, device);
      if (failureKey(o) === key) {
        best = v;
        bestOutcome = o;
        progress = true;
        break;
      }
    }
  }
  return { program: best, outcome: bestOutcome };
}

/** A class name for a (shrunk) failure: what went wrong and which operations it takes. */
export function classify(p: Program, o: Outcome): string {
  const ops = [...new Set(p.stmts.map((s) => (typeof s.lit.name === 'string' ? `${s.op}.${s.lit.name}` : s.op)))].sort().join(' ');
  if (o.kind === 'crash') return `crash (${o.mode}): ${normalize(o.error).slice(0, 80)} | ${ops}`;
  if (o.kind === 'mismatch') return `mismatch (${o.mode}): ${o.detail.split(':')[0].replace(/\d+/g, 'N')} | ${ops}`;
  return o.kind;
}

export interface Failure { seed: number; cls: string; outcome: Outcome; code: string }

export interface FuzzStats {
  device: Device;
  programs: number;
  ok: number;
  invalid: number;
  mismatches: number;
  crashes: number;
  failures: Failure[];
  /** failures per class */
  classes: Map<string, number>;
  invalidReasons: Map<string, number>;
}

export interface FuzzOptions {
  device: Device;
  firstSeed: number;
  /** stop after this many programs */
  count?: number;
  /** or after this many seconds */
  seconds?: number;
  /** statements per program */
  maxStmts?: number;
  /** shrink failures (slower; on by default) */
  shrink?: boolean;
  /** called on each new failure class */
  onFailure?: (f: Failure) => void;
  /** polled between programs: true ends the run early (the statistics so far are returned) */
  stop?: () => boolean;
}

/** Runs programs with seeds firstSeed, firstSeed + 1, ... and collects statistics. */
export async function fuzz(o: FuzzOptions): Promise<FuzzStats> {
  const stats: FuzzStats = { device: o.device, programs: 0, ok: 0, invalid: 0, mismatches: 0, crashes: 0, failures: [], classes: new Map(), invalidReasons: new Map() };
  const until = o.seconds ? Date.now() + o.seconds * 1000 : Infinity;
  for (let seed = o.firstSeed; (o.count === undefined || stats.programs < o.count) && Date.now() < until && !o.stop?.(); seed++) {
    const p = generate(seed, { maxStmts: o.maxStmts ?? 8 });
    const outcome = await check(p, o.device);
    stats.programs++;
    if (outcome.kind === 'ok') { stats.ok++; continue; }
    if (outcome.kind === 'invalid') {
      stats.invalid++;
      const r = normalize(outcome.error).slice(0, 80);
      stats.invalidReasons.set(r, (stats.invalidReasons.get(r) ?? 0) + 1);
      continue;
    }
    if (outcome.kind === 'mismatch') stats.mismatches++;
    else stats.crashes++;
    const small = o.shrink === false ? { program: p, outcome } : await shrink(p, outcome, o.device);
    const cls = classify(small.program, small.outcome);
    const seen = stats.classes.get(cls) ?? 0;
    stats.classes.set(cls, seen + 1);
    if (seen === 0) {
      const f: Failure = { seed, cls, outcome: small.outcome, code: print(small.program, o.device) };
      stats.failures.push(f);
      o.onFailure?.(f);
    }
  }
  return stats;
}

/** A failure as text: the class, the seed, what differed, and the minimal program. */
export function describeFailure(f: Failure): string {
  const what = f.outcome.kind === 'crash' ? `${f.outcome.mode} threw: ${f.outcome.error}` : f.outcome.kind === 'mismatch' ? `${f.outcome.mode} differs from eager: ${f.outcome.detail}` : f.outcome.kind;
  return `== ${f.cls}\n   seed ${f.seed}: ${what}\n${f.code.split('\n').map((l) => '   ' + l).join('\n')}`;
}
