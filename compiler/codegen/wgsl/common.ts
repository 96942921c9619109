// What every WGSL kernel strategy shares: the device limits, the buffers a kernel binds (Args), the
// expression emitter over them, stores, index decomposition and the one-invocation-per-element grid.

import type { DType } from '../../../ir/dtype.ts';
import type { KernelOutput, KernelSpec, LoadExpr } from '../../../ir/kernel.ts';
import type { View } from '../../../ir/view.ts';
import { Emitter } from '../emit.ts';
import { conv, wgslSpelling } from '../spelling-wgsl.ts';

export interface WgslLimits {
  maxStorageBuffersPerShaderStage: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeWorkgroupsPerDimension: number;
  /** the adapter's smallest subgroup size where the device has the 'subgroups' feature, else 0 */
  subgroupMinSize: number;
}

export const DEFAULT_LIMITS: WgslLimits = {
  maxStorageBuffersPerShaderStage: 8,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeWorkgroupsPerDimension: 65535,
  subgroupMinSize: 0,
};

export interface WgslBinding { binding: number; arg: number; access: 'read' | 'read_write'; vec4: boolean }

/** Which buffers a kernel uses, and how it names them. */
export class Args {
  private used = new Map<number, boolean>(); // canonical arg -> written
  private vec = new Set<number>(); // canonical args read as array<vec4<T>>
  readonly offs = new Set<number>();
  constructor(private spec: KernelSpec, private alias: readonly number[] | undefined, readonly aligned: readonly boolean[] | undefined) {}
  /** the buffer of `arg` typed as array<vec4<T>> */
  bufVec4(arg: number, write = false): string {
    const c = this.canon(arg);
    if (this.used.has(c) && !this.vec.has(c)) throw new Error(`wgsl codegen: kernel '${this.spec.name}': argument ${arg} read both as vec4 and as scalars`);
    this.used.set(c, (this.used.get(c) ?? false) || write);
    this.vec.add(c);
    this.offs.add(arg);
    return `b${c}`;
  }
  canon(arg: number): number {
    if (arg < 0 || arg >= this.spec.args.length) throw new Error(`wgsl codegen: kernel '${this.spec.name}' uses argument ${arg} but has ${this.spec.args.length}`);
    return this.alias?.[arg] ?? arg;
  }
  buf(arg: number, write = false): string {
    const c = this.canon(arg);
    if (this.vec.has(c)) throw new Error(`wgsl codegen: kernel '${this.spec.name}': argument ${arg} read both as vec4 and as scalars`);
    this.used.set(c, (this.used.get(c) ?? false) || write);
    this.offs.add(arg);
    return `b${c}`;
  }
  off(arg: number): string { this.offs.add(arg); return `ofs${arg}`; }
  storage(arg: number): DType { return this.spec.args[this.canon(arg)].dtype; }
  bindings(): WgslBinding[] {
    return [...this.used.keys()].sort((a, b) => a - b).map((arg, i) => ({ binding: i + 1, arg, access: this.used.get(arg) ? 'read_write' as const : 'read' as const, vec4: this.vec.has(arg) }));
  }
}

/** An emitter of a kernel's expressions: loads read `args`' buffers at `index(view, arg)`. */
export function emitter(args: Args, index: (view: View, arg: number) => string, prefix: string, acc?: { name: string; dtype: DType }, counter?: string): Emitter {
  const load = (l: LoadExpr): string => conv(`${args.buf(l.arg)}[${index(l.view, l.arg)}]`, args.storage(l.arg), l.dtype);
  return new Emitter(wgslSpelling, { load, prefix, acc, counter }, 'wgsl codegen');
}

/** A store of `value` (of dtype `from`) into output `o`. */
export function store(args: Args, o: KernelOutput, idx: string, value: string, from: DType): string {
  const b = args.buf(o.arg, true);
  const to = args.storage(o.arg);
  const v = to === 'bool' && from === 'float32' ? `select(0i, 1i, ${value} != 0 || k_isnan(${value}))` : conv(value, from, to);
  return `${b}[${idx}] = ${v};`;
}

/** Splits flat index `flat` over `sizes` (row-major) into the variables `vars`. */
export function decompose(flat: string, sizes: readonly number[], vars: readonly string[], tmp: string): string[] {
  const lines: string[] = [];
  if (sizes.length === 0) return lines;
  let r = flat;
  for (let d = sizes.length - 1; d >= 1; d--) {
    lines.push(`let ${vars[d]} = ${r} % ${sizes[d]};`);
    lines.push(`let ${tmp}${d} = ${r} / ${sizes[d]};`);
    r = `${tmp}${d}`;
  }
  lines.push(`let ${vars[0]} = ${r};`);
  return lines;
}

export function grid1d(groups: number, lim: WgslLimits, name: string): [number, number, number] {
  if (groups <= 0) return [0, 1, 1];
  const max = lim.maxComputeWorkgroupsPerDimension;
  const x = Math.min(groups, max);
  const y = Math.ceil(groups / x);
  if (y > max) throw new Error(`kiln: WebGPU kernel '${name}' needs ${groups} workgroups, more than this device can launch (${max} x ${max})`);
  return [x, y, 1];
}

export const indent = (lines: readonly string[], by = '  '): string[] => lines.map((l) => by + l);

/**
 * Where an invocation's register block lies in a tiled product: the workgroup's tile (row0, col0) of
 * `tm` x `tn`, and this invocation's `bm` x `bn` block (i0, j0) in it, `wx` invocations to a row.
 */
export function blockCoords(wx: number, tm: number, tn: number, bm: number, bn: number): string[] {
  return [
    `let tx = i32(lid) % ${wx};`,
    `let ty = i32(lid) / ${wx};`,
    `let row0 = i32(wid.y) * ${tm};`,
    `let col0 = i32(wid.x) * ${tn};`,
    `let i0 = row0 + ty * ${bm};`,
    `let j0 = col0 + tx * ${bn};`,
  ];
}

/**
 * The k loop of a workgroup-tiled product (matmul and conv): `stage` fills tA [tk x tm] and tB [tk x tn]
 * for reduction positions k0.., then each invocation adds its bm x bn block of tA * tB to `c{r}_{cv}`
 * (vec4 accumulators of type `at`, declared by the caller).
 */
export function tiledKLoop(kTotal: number, tk: number, tm: number, tn: number, bm: number, bn: number, at: string, stage: string[]): string[] {
  return [
    `for (var k0 = 0; k0 < ${kTotal}; k0 = k0 + ${tk}) {`,
    ...indent([
      ...stage,
      'workgroupBarrier();',
      `for (var q = 0; q < ${tk}; q = q + 1) {`,
      ...indent([
        `let ab = q * ${tm} + ty * ${bm};`,
        `let bb = q * ${tn} + tx * ${bn};`,
        ...Array.from({ length: bn / 4 }, (_, cv) => `let y${cv} = vec4<${at}>(tB[bb + ${4 * cv}], tB[bb + ${4 * cv + 1}], tB[bb + ${4 * cv + 2}], tB[bb + ${4 * cv + 3}]);`),
        ...Array.from({ length: bm }, (_, r) => [`let x${r} = tA[ab + ${r}];`, ...Array.from({ length: bn / 4 }, (_, cv) => `c${r}_${cv} = c${r}_${cv} + x${r} * y${cv};`)]).flat(),
      ]),
      '}',
      'workgroupBarrier();',
    ]),
    '}',
  ];
}

/**
 * The reduction loop of a subgroup variant (matmul and convolution `lanes`): rounds of `lanes` steps
 * over `total` steps, and a shorter last round where `lanes` does not divide it. `round(first, ka,
 * steps)` writes one round: `first(per)` is its first step in units of `per` steps, `ka` this lane's
 * step (the lane's own share of the round's loads; clamped in the last round, whose extra lanes load
 * steps nothing uses), `steps` how many steps it has. `zero` hides the trip count (blockEpilogue).
 */
export function laneRounds(total: number, lanes: number, zero: string, round: (first: (per: number) => string, ka: string, steps: number) => string[]): string[] {
  const full = Math.floor(total / lanes) * lanes;
  return [
    `let kn = ${full / lanes} + ${zero};`,
    `for (var kr = 0; kr < kn; kr = kr + 1) {`,
    ...indent(round((per) => `kr * ${lanes / per}`, `kr * ${lanes} + i32(sgl)`, lanes)),
    '}',
    ...(total > full ? ['{', ...indent(round((per) => `${full / per}`, `min(${full} + i32(sgl), ${total - 1})`, total - full)), '}'] : []),
  ];
}

/**
 * The epilogue of a bm x bn register block held in vec4s c{r}_{cv} (columns 4cv..4cv+3): a loop over
 * the block's rows, each picking its row's vec4s with selects, and one copy of `body` per column, with
 * `acc` the element at row `row` (i0 + ..) and column `j` (j0 + ..), where `row < rows && j < cols`.
 * Software adapters compile slowly what they unroll: all bm x bn copies made a 4x4 matmul shader cost
 * lavapipe 0.9-1.2 s of CPU, and a loop with a constant trip count is unrolled by LLVM as well, so
 * `zero`, an expression that is 0 at run time (the min of an element offset and 0), hides the count.
 * (One loop over all elements through a private array compiled fastest, 0.3-0.4 s, but ran the MLP's
 * k = 128 weight-gradient products 1.5-2x slower.)
 */
export function blockEpilogue(bm: number, bn: number, row: string, rows: number, cols: number, zero: string, body: string[]): string[] {
  const nv = bn / 4;
  const pick = (cv: number) => Array.from({ length: bm - 1 }, (_, r) => r + 1).reduce((e, r) => `select(${e}, c${r}_${cv}, qr == ${r})`, `c0_${cv}`);
  return [
    `for (var qr = 0; qr < ${bm} + ${zero}; qr = qr + 1) {`,
    ...indent([
      `let ${row} = i0 + qr;`,
      `if (${row} >= ${rows}) { break; }`,
      ...Array.from({ length: nv }, (_, cv) => `let rv${cv} = ${pick(cv)};`),
      ...Array.from({ length: bn }, (_, c) => [
        '{',
        ...indent([`let j = j0 + ${c};`, `if (j < ${cols}) {`, ...indent([`let acc = rv${c >> 2}.${'xyzw'[c & 3]};`, ...body]), '}']),
        '}',
      ]).flat(),
    ]),
    '}',
  ];
}

/**
 * One logical invocation per element `gi` in [0, total): a 1-D or 2-D grid of `wg`-wide workgroups,
 * capped at `cap` workgroups with each invocation looping over several elements (grid-stride).
 */
export function perElement(total: number, wg: number, cap: number, lim: WgslLimits, name: string, body: string[]): { main: string[]; workgroups: [number, number, number] } {
  const groups = Math.ceil(total / wg);
  if (groups <= cap || groups <= 1) {
    const workgroups = grid1d(groups, lim, name);
    return { workgroups, main: [`let gi = i32((wid.y * ${workgroups[0]}u + wid.x) * ${wg}u + lid);`, `if (gi >= ${total}) { return; }`, ...body] };
  }
  const g = Math.min(cap, lim.maxComputeWorkgroupsPerDimension);
  const stride = g * wg;
  const per = Math.ceil(total / stride);
  return {
    workgroups: [g, 1, 1],
    main: [
      `let g0 = i32(wid.x * ${wg}u + lid);`,
      `for (var rep = 0; rep < ${per}; rep = rep + 1) {`,
      ...indent([`let gi = g0 + rep * ${stride};`, `if (gi >= ${total}) { break; }`, ...body]),
      '}',
    ],
  };
}

export interface Body {
  decls: string[];
  wg: number | [number, number];
  main: string[];
  workgroups: [number, number, number];
  /** the body calls subgroup builtins and reads the invocation's lane as `sgl` (needs `enable subgroups`) */
  subgroups?: boolean;
}
