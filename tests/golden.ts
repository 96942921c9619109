// Shared helpers for the golden-data suites (reference values from real PyTorch,
// ../shared/golden/*.json; schema in ../shared/golden/README.md).
import { readFileSync } from 'node:fs';
import * as kiln from '../index.ts';

export type Device = 'cpu' | 'webgpu';

/** A golden tensor: flat row-major data; bool data is 0/1. */
export interface GTensor {
  shape: number[];
  dtype: 'float32' | 'int32' | 'bool';
  data: number[];
  requiresGrad?: boolean;
}

export interface Tol {
  rtol: number;
  atol: number;
}

export interface OpCase {
  kind: 'op';
  name: string;
  op?: string;
  expr: string;
  torch?: string;
  inputs: Record<string, GTensor>;
  output: GTensor;
  gradOutput: GTensor | null;
  grads: Record<string, GTensor | null>;
  tol: Tol;
  tags: string[];
}

export interface DoubleBackwardCase {
  kind: 'doubleBackward';
  name: string;
  program: string[];
  inputs: { x: GTensor; y: GTensor };
  z: GTensor;
  afterFirstBackward: { x: GTensor; y: GTensor };
  afterSecondBackward: { x: GTensor; y: GTensor };
  autogradGrad: { gx: GTensor; gxx: GTensor; gxy: GTensor };
  tol: Tol;
  tags: string[];
}

export interface OptimCase {
  kind: 'optim';
  name: string;
  optimizer: string;
  options: Record<string, unknown>;
  expr: string;
  loss: 'quadratic' | 'linear';
  params: GTensor[];
  a?: GTensor[];
  c?: GTensor[];
  gradSeq?: GTensor[][];
  steps: { loss: number; params: GTensor[] }[];
  tol: Tol;
  tags: string[];
}

/** norm.json: a module trained for a few steps, then evaluated (golden/README.md "kind: module"). */
export interface ModuleCase {
  kind: 'module';
  name: string;
  ctor: string;
  trainInputs: GTensor[];
  gradOutputs: GTensor[];
  trainOutputs: GTensor[];
  inputGrads: GTensor[];
  evalInput: GTensor;
  evalOutput: GTensor;
  grads: Record<string, GTensor>;
  buffers: Record<string, GTensor>;
  tol: Tol;
  tags: string[];
}

/** schedules.json: the learning rates a scheduler sets over 11 steps. */
export interface ScheduleCase {
  kind: 'schedule';
  name: string;
  optimizer: string;
  expr: string;
  lrs: number[];
  tol: Tol;
  tags: string[];
}

/** schedules.json: gradient clipping of parameters whose .grad is given. */
export interface ClipCase {
  kind: 'clip';
  name: string;
  expr: string;
  grads: GTensor[];
  returned: GTensor | null;
  clippedGrads: GTensor[];
  tol: Tol;
  tags: string[];
}

export type Case = OpCase | DoubleBackwardCase | OptimCase | ModuleCase | ScheduleCase | ClipCase;

export interface GoldenFile {
  schema: number;
  group: string;
  generator?: string;
  torch?: string;
  defaultTol: Tol;
  cases: Case[];
}

/** The default tolerance of the golden data, and the looser one README.md allows for long chains. */
export const TOL: Tol = { rtol: 1e-5, atol: 1e-6 };
export const LOOSE_TOL: Tol = { rtol: 1e-4, atol: 1e-5 };

/** Load `../shared/golden/<name>.json` (the shared folder lies beside the repository). */
export function loadGolden(name: string): GoldenFile {
  const file = name.endsWith('.json') ? name : `${name}.json`;
  const url = new URL(`../../shared/golden/${file}`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')) as GoldenFile;
}

/** Build a kiln tensor from a golden tensor (int32 as Int32Array, float32 as Float32Array, bool as bool). */
export function toTensor(g: GTensor, device: Device = 'cpu', requiresGrad?: boolean): kiln.Tensor {
  const rg = requiresGrad ?? !!g.requiresGrad;
  if (g.dtype === 'int32') {
    return kiln.tensor(Int32Array.from(g.data), { shape: g.shape, dtype: 'int32', device });
  }
  if (g.dtype === 'bool') {
    return kiln.tensor(g.data.map((v) => v !== 0), { dtype: 'bool', device }).reshape(g.shape);
  }
  return kiln.tensor(Float32Array.from(g.data), { shape: g.shape, dtype: 'float32', device, requiresGrad: rg });
}

const fmt = (v: number) => (Object.is(v, -0) ? '-0' : String(v));

/** `|got - expected| <= atol + rtol*|expected|`; NaN only matches NaN. -0 equals 0. */
export function closeEnough(got: number, expected: number, tol: Tol): boolean {
  if (Number.isNaN(expected)) return Number.isNaN(got);
  if (!Number.isFinite(expected)) return got === expected;
  return Math.abs(got - expected) <= tol.atol + tol.rtol * Math.abs(expected);
}

/**
 * Compare flat values; returns a readable description of the first mismatches (or null).
 * `exact` for int/bool data.
 */
export function describeMismatch(
  got: ArrayLike<number | boolean | bigint>,
  expected: ArrayLike<number>,
  tol: Tol,
  exact: boolean,
  shape?: number[],
): string | null {
  const g = Array.from(got as ArrayLike<unknown>, (v) => Number(v));
  if (g.length !== expected.length) {
    return `length ${g.length} != expected ${expected.length}; got [${g.slice(0, 16).map(fmt).join(', ')}${g.length > 16 ? ', ...' : ''}]`;
  }
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    const ok = exact ? g[i] === e : closeEnough(g[i], e, tol);
    if (!ok) {
      count++;
      if (bad.length < 6) {
        const where = shape && shape.length > 1 ? `[${unravel(i, shape).join(',')}] (flat ${i})` : `[${i}]`;
        bad.push(`at ${where}: got ${fmt(g[i])}, expected ${fmt(e)}` + (exact ? '' : ` (|diff| ${Math.abs(g[i] - e).toExponential(3)} > ${(tol.atol + tol.rtol * Math.abs(e)).toExponential(3)})`));
      }
    }
  }
  if (count === 0) return null;
  return `${count} of ${expected.length} values differ (${exact ? 'exact' : `rtol ${tol.rtol}, atol ${tol.atol}`}): ${bad.join('; ')}${count > bad.length ? '; ...' : ''}`;
}

function unravel(i: number, shape: number[]): number[] {
  const idx = new Array(shape.length).fill(0);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

/** Assert that a kiln tensor has the golden tensor's shape, dtype and values (async read: works on webgpu). */
export async function expectTensor(actual: kiln.Tensor | null | undefined, expected: GTensor, tol: Tol, label: string): Promise<void> {
  if (actual === null || actual === undefined) {
    throw new Error(`${label}: expected a tensor of shape [${expected.shape}] but got ${actual}`);
  }
  const shape = Array.from(actual.shape);
  if (JSON.stringify(shape) !== JSON.stringify(expected.shape)) {
    throw new Error(`${label}: shape [${shape}] != expected [${expected.shape}]`);
  }
  if (actual.dtype !== expected.dtype) {
    throw new Error(`${label}: dtype '${actual.dtype}' != expected '${expected.dtype}'`);
  }
  const data = await actual.data();
  const msg = describeMismatch(data as any, expected.data, tol, expected.dtype !== 'float32', expected.shape);
  if (msg) throw new Error(`${label}: ${msg}`);
}

/** Assert plain values (e.g. from `await t.data()`), with a label. */
export function expectValues(got: ArrayLike<number | boolean | bigint>, expected: ArrayLike<number>, tol: Tol | 'exact', label: string): void {
  const msg = describeMismatch(got, expected, tol === 'exact' ? TOL : tol, tol === 'exact');
  if (msg) throw new Error(`${label}: ${msg}`);
}

/** Read a tensor's values as plain numbers (async; works on every device). */
export async function values(t: kiln.Tensor | null | undefined): Promise<number[]> {
  if (t === null || t === undefined) throw new Error(`expected a tensor to read, got ${t} (e.g. a .grad that was never set)`);
  return Array.from((await t.data()) as ArrayLike<unknown>, (v) => Number(v));
}

/**
 * Evaluate a golden `expr` with the case's input names bound. With `device`, tensors the expression
 * creates itself (`kiln.ones([4, 4])`, `new nn.Embedding(...)`) are made there too.
 */
export function evalExpr(expr: string, names: string[], args: unknown[], device?: Device): any {
  // eslint-disable-next-line no-new-func
  const fn = new Function('kiln', 'F', 'nn', 'optim', ...names, `return ${expr};`);
  const prev = kiln.getDefaultDevice();
  if (device) kiln.setDefaultDevice(device);
  try {
    return fn(kiln, kiln.F, kiln.nn, kiln.optim, ...args);
  } finally {
    kiln.setDefaultDevice(prev);
  }
}
