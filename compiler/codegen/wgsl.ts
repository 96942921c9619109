// WGSL codegen: one compute shader per kernel spec, with the same semantics as the JavaScript codegen
// (js.ts). Sizes and strides are baked in as constants; what changes from launch to launch (each
// argument's element offset into its buffer, and the launch's scalar params) comes in a uniform, so
// eager slicing reuses the shader.
//
// Layout of every shader:
//   @binding(0)      var<uniform> U: { off: array<vec4<i32>, A4>, pf: array<vec4<f32>, P4>, pi: array<vec4<i32>, P4> }
//                    off[i/4][i%4] = element offset of argument i; pf/pi = param i as f32 and as i32.
//   @binding(1 + k)  var<storage, read|read_write> b<arg>: array<f32 | i32> for each buffer the kernel uses.
// Storage types: float32 -> f32, int32 -> i32, bool -> i32 holding 0/1 (so bool<->int32 casts are free
// and a bool value is the same 0/1 number it is in js.ts). Every expression value has the WGSL type of
// its dtype (f32 or i32). When two arguments are bound to the same buffer (an in-place write through a
// view of an input), `opts.alias` maps them to one binding: WebGPU forbids binding one buffer both
// read-only and writable in a dispatch.
//
// Kernel strategies:
//   map        one invocation per output element; past `maxWorkgroups` workgroups (256 on software
//              adapters, 4096 otherwise) each invocation loops over several elements (grid-stride);
//              without a cap, a 2-D grid of workgroups past 65535 groups.
//   reduce     a serial loop per output element (float sums in 64-element partial sums) when the
//              reduced extent is small or there are many outputs; otherwise one workgroup per output
//              element: strided partials, then a tree in workgroup memory (sum / NaN-propagating max /
//              first-position argmax). On software adapters the tree is used for < 16 outputs only.
//   matmul     variants (MatmulVariant, picked per adapter and shape by runtime/webgpu/autotune.ts):
//              register blocking, each invocation computing a bm x bn block (default 4x4, 8x8
//              invocations per workgroup, no workgroup memory; 8x8 blocks on software adapters for big
//              products, see defaultMatmul), or a workgroup-memory tiled kernel (real GPUs). Float operands whose layout allows it are read as vec4s: a along k (k % 4 == 0) or
//              along m (a transposed a), b along n or along k (a transposed b; k % 4 == 0); every base
//              offset must be a multiple of 4. The epilogue runs once per element in a loop over the
//              block (not unrolled: compile time). Every variant sums in increasing k order, one product
//              at a time.
//   gather     one invocation per output element.
//   scatterAdd deterministic, no atomics: one invocation per OUTPUT element, looping over the source
//              positions along the axis that could land on it, in increasing order (so the float32
//              rounding sequence equals js.ts's). Elements of the output buffer outside the output view
//              are not zeroed (js.ts zero-fills the whole buffer from the offset).
// Constants are `let`s, never WGSL const-expressions (those fail shader creation on overflow).

import type { DType } from '../../ir/dtype.ts';
import { exprLoads, unreachable, type Kernel, type KernelOutput, type KernelSpec, type LoadExpr } from '../../ir/kernel.ts';
import type { View } from '../../ir/view.ts';
import { axisIndexedView, collapseDims, Emitter, indexOf, operandLoad } from './emit.ts';
import { conv, PRELUDE, wgslSpelling, wtype } from './spelling-wgsl.ts';

export { wtype, type WType } from './spelling-wgsl.ts';


export interface WgslLimits {
  maxStorageBuffersPerShaderStage: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeWorkgroupsPerDimension: number;
}

export const DEFAULT_LIMITS: WgslLimits = {
  maxStorageBuffersPerShaderStage: 8,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeWorkgroupsPerDimension: 65535,
};

export interface WgslOptions {
  limits?: Partial<WgslLimits>;
  /** alias[i] = the lowest argument index bound to the same buffer as argument i (absent: no sharing) */
  alias?: readonly number[];
  /** aligned[i]: argument i's launch offset is a multiple of 4 elements (lets matmul use vec4 loads) */
  aligned?: readonly boolean[];
  /**
   * At most this many workgroups for one-invocation-per-element kernels (map, gather, scatterAdd, small
   * reductions); each invocation then loops over several elements. Software adapters (lavapipe) pay per
   * invocation, so a small cap (256) is several times faster there; GPUs want more (default 4096).
   */
  maxWorkgroups?: number;
  /** reduce strategy: 'auto' (by size), or force one (tests, tuning) */
  reduce?: 'auto' | 'serial' | 'tree';
  /**
   * A software adapter (lavapipe): workgroup trees only pay off for a handful of outputs there
   * (measured: sum of [1000, 1000] over dim 1, serial 1.0 ms vs tree 2.9 ms; sum of 1M to one value,
   * serial 5.5 ms vs tree 1.4 ms).
   */
  software?: boolean;
  /** the matmul variant (default DEFAULT_MATMUL); an autotuner picks one per adapter and shape */
  matmul?: MatmulVariant;
}

export interface WgslBinding { binding: number; arg: number; access: 'read' | 'read_write'; vec4: boolean }

export interface WgslKernel {
  name: string;
  code: string;
  workgroups: [number, number, number];
  /** storage bindings (binding 0 is always the uniform) */
  bindings: WgslBinding[];
  /** bytes of the uniform (see packUniform) */
  uniformBytes: number;
}

/** Which buffers a kernel uses, and how it names them. */
class Args {
  private used = new Map<number, boolean>(); // canonical arg -> written
  private vec = new Set<number>(); // canonical args read as array<vec4<T>>
  readonly offs = new Set<number>();
  constructor(private spec: KernelSpec, private alias: readonly number[] | undefined, readonly aligned: readonly boolean[] | undefined) {}
  /** the buffer of `arg` typed as array<vec4<T>> (read only) */
  bufVec4(arg: number): string {
    const c = this.canon(arg);
    if (this.used.has(c) && !this.vec.has(c)) throw new Error(`wgsl codegen: kernel '${this.spec.name}': argument ${arg} read both as vec4 and as scalars`);
    this.used.set(c, this.used.get(c) ?? false);
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
function emitter(args: Args, index: (view: View, arg: number) => string, prefix: string, acc?: { name: string; dtype: DType }, counter?: string): Emitter {
  const load = (l: LoadExpr): string => conv(`${args.buf(l.arg)}[${index(l.view, l.arg)}]`, args.storage(l.arg), l.dtype);
  return new Emitter(wgslSpelling, { load, prefix, acc, counter }, 'wgsl codegen');
}

/** A store of `value` (of dtype `from`) into output `o`. */
function store(args: Args, o: KernelOutput, idx: string, value: string, from: DType): string {
  const b = args.buf(o.arg, true);
  const to = args.storage(o.arg);
  const v = to === 'bool' && from === 'float32' ? `select(0i, 1i, ${value} != 0 || k_isnan(${value}))` : conv(value, from, to);
  return `${b}[${idx}] = ${v};`;
}

/** Splits flat index `flat` over `sizes` (row-major) into the variables `vars`. */
function decompose(flat: string, sizes: readonly number[], vars: readonly string[], tmp: string): string[] {
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

function grid1d(groups: number, lim: WgslLimits, name: string): [number, number, number] {
  if (groups <= 0) return [0, 1, 1];
  const max = lim.maxComputeWorkgroupsPerDimension;
  const x = Math.min(groups, max);
  const y = Math.ceil(groups / x);
  if (y > max) throw new Error(`kiln: WebGPU kernel '${name}' needs ${groups} workgroups, more than this device can launch (${max} x ${max})`);
  return [x, y, 1];
}

const indent = (lines: readonly string[], by = '  '): string[] => lines.map((l) => by + l);

/**
 * One logical invocation per element `gi` in [0, total): a 1-D or 2-D grid of `wg`-wide workgroups,
 * capped at `cap` workgroups with each invocation looping over several elements (grid-stride).
 */
function perElement(total: number, wg: number, cap: number, lim: WgslLimits, name: string, body: string[]): { main: string[]; workgroups: [number, number, number] } {
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

interface Body { decls: string[]; wg: number | [number, number]; main: string[]; workgroups: [number, number, number] }

function mapKernel(k: Extract<Kernel, { kind: 'map' }>, args: Args, lim: WgslLimits, name: string, cap: number): Body {
  const views = [...k.exprs.flatMap((e) => exprLoads(e).map((l) => l.view)), ...k.outputs.map((o) => o.view)];
  const uniq = [...new Set(views)];
  // a view of lower rank than the iteration (a 0-d seed, say) is broadcast: its missing leading dims get stride 0
  const rank = k.shape.length;
  const full = (v: View): number[] => [...new Array<number>(Math.max(0, rank - v.strides.length)).fill(0), ...v.strides];
  const { shape, strides } = collapseDims(k.shape, uniq.map(full));
  const vars = shape.map((_, d) => `i${d}`);
  const collapsed = new Map<View, View>(uniq.map((v, i) => [v, { shape, strides: strides[i], offset: v.offset }]));
  const total = shape.reduce((a, b) => a * b, 1);
  const wg = Math.min(256, lim.maxComputeInvocationsPerWorkgroup);
  // `gi` is the row-major position in k.shape (collapsing dims keeps row-major order): random's counter
  const em = emitter(args, (v, arg) => indexOf(collapsed.get(v)!, vars, args.off(arg)), 'v', undefined, 'gi');
  const values = k.exprs.map((e) => em.emit(e));
  const stores = k.outputs.map((o, j) => store(args, o, indexOf(collapsed.get(o.view)!, vars, args.off(o.arg)), values[j], k.exprs[j].dtype));
  const { main, workgroups } = perElement(total, wg, cap, lim, name, [...decompose('gi', shape, vars, 'q'), ...em.lines, ...stores]);
  return { decls: [], wg, main, workgroups };
}

function reduceKernel(k: Extract<Kernel, { kind: 'reduce' }>, args: Args, lim: WgslLimits, name: string, cap: number, strategy: 'auto' | 'serial' | 'tree', software: boolean): Body {
  const kept = k.inShape.map((_, i) => i).filter((i) => !k.axes.includes(i) && k.inShape[i] !== 1);
  const red = k.axes.filter((i) => k.inShape[i] !== 1);
  const vars = k.inShape.map((d, i) => (d === 1 ? null : `i${i}`));
  const keptVars = k.inShape.map((_, i) => (kept.includes(i) ? `i${i}` : null));
  const keptSizes = kept.map((d) => k.inShape[d]);
  const redSizes = red.map((d) => k.inShape[d]);
  const nOut = keptSizes.reduce((a, b) => a * b, 1);
  const R = redSizes.reduce((a, b) => a * b, 1);
  const vt = wtype(k.body.dtype);
  const isF = vt === 'f32';
  const accType: DType = k.op === 'argmax' ? 'int32' : k.body.dtype === 'bool' ? 'int32' : k.body.dtype;
  const at = wtype(accType);

  const inner = emitter(args, (v, arg) => indexOf(v, vars, args.off(arg)), 'v');
  const value = inner.emit(k.body);
  const outer = emitter(args, (v, arg) => indexOf(v, keptVars, args.off(arg)), 'e', { name: 'acc', dtype: accType });
  const result = outer.emit(k.epilogue);
  const storeLine = store(args, k.output, indexOf(k.output.view, keptVars, args.off(k.output.arg)), result, k.epilogue.dtype);
  const lowest = isF ? '(-k_inf())' : '(-2147483647 - 1)';
  const nan = (x: string) => (isF ? `k_isnan(${x})` : 'false');

  const maxWg = Math.min(256, lim.maxComputeInvocationsPerWorkgroup);
  const bytesPer = 4 * (k.op === 'argmax' ? 2 : 1);
  let wg = 1;
  while (wg * 2 <= maxWg && wg * 2 * bytesPer <= lim.maxComputeWorkgroupStorageSize && wg * 2 <= Math.max(32, R / 8)) wg *= 2;
  const tree = strategy === 'tree' ? wg >= 2 : strategy === 'serial' ? false : R > 64 && nOut < (software ? 16 : 16384) && wg >= 16;

  if (!tree) {
    const init = k.op === 'sum' ? [`var acc: ${at} = 0;`] : k.op === 'max' ? [`var acc: ${at} = ${lowest};`]
      : [`var acc: i32 = 0;`, `var best: ${vt} = ${lowest};`, `var n: i32 = 0;`];
    const update = k.op === 'sum' ? [`acc = acc + ${conv(value, k.body.dtype, accType)};`]
      : k.op === 'max' ? [`if (${value} > acc || ${nan(value)}) { acc = ${value}; }`]
      : [`if (n == 0 || ${value} > best || (${nan(value)} && !${nan('best')})) { best = ${value}; acc = n; }`, 'n = n + 1;'];
    let loop = [...inner.lines, ...update];
    const blocked = k.op === 'sum' && at === 'f32' && red.length > 0 && redSizes[red.length - 1] > 2 * SUM_BLOCK;
    for (let j = red.length - 1; j >= 0; j--) {
      const v = vars[red[j]]!;
      if (j === red.length - 1 && blocked) {
        // float sums: partial sums of SUM_BLOCK elements, so the rounding error grows with
        // SUM_BLOCK + n / SUM_BLOCK rather than n (the CPU backend sums in float64)
        loop = [
          `for (var blk = 0; blk < ${redSizes[j]}; blk = blk + ${SUM_BLOCK}) {`,
          `  var part: f32 = 0;`,
          `  for (var ${v} = blk; ${v} < min(blk + ${SUM_BLOCK}, ${redSizes[j]}); ${v} = ${v} + 1) {`,
          ...indent([...inner.lines, `part = part + ${value};`], '    '),
          '  }',
          '  acc = acc + part;',
          '}',
        ];
        continue;
      }
      loop = [`for (var ${v} = 0; ${v} < ${redSizes[j]}; ${v} = ${v} + 1) {`, ...indent(loop), '}'];
    }
    const wgs = Math.min(64, maxWg);
    const { main, workgroups } = perElement(nOut, wgs, cap, lim, name,
      [...decompose('gi', keptSizes, kept.map((d) => vars[d]!), 'q'), ...init, ...loop, ...outer.lines, storeLine]);
    return { decls: [], wg: wgs, main, workgroups };
  }

  // One workgroup per output element: strided partials, then a tree in workgroup memory.
  const workgroups = grid1d(nOut, lim, name);
  const decls = [`var<workgroup> sv: array<${k.op === 'argmax' ? vt : at}, ${wg}>;`];
  if (k.op === 'argmax') decls.push(`var<workgroup> si: array<i32, ${wg}>;`);
  const init = k.op === 'sum' ? [`var acc: ${at} = 0;`] : k.op === 'max' ? [`var acc: ${at} = ${lowest};`]
    : [`var acc: i32 = -1;`, `var best: ${vt} = ${lowest};`];
  const update = k.op === 'sum' ? [`acc = acc + ${conv(value, k.body.dtype, accType)};`]
    : k.op === 'max' ? [`if (${value} > acc || ${nan(value)}) { acc = ${value}; }`]
    : [`if (acc < 0 || ${value} > best || (${nan(value)} && !${nan('best')})) { best = ${value}; acc = r; }`];
  const loop = [
    `for (var r = i32(lid); r < ${R}; r = r + ${wg}) {`,
    ...indent([...decompose('r', redSizes, red.map((d) => vars[d]!), 'rq'), ...inner.lines, ...update]),
    '}',
  ];
  const combine: string[] = [];
  for (let s = wg >> 1; s >= 1; s >>= 1) {
    let step: string[];
    if (k.op === 'sum') step = [`sv[lid] = sv[lid] + sv[lid + ${s}u];`];
    else if (k.op === 'max') step = [`let b = sv[lid + ${s}u];`, `if (b > sv[lid] || ${nan('b')}) { sv[lid] = b; }`];
    else {
      step = [
        `let bi = si[lid + ${s}u];`,
        `let ai = si[lid];`,
        `if (bi >= 0) {`,
        `  let bv = sv[lid + ${s}u];`,
        `  let av = sv[lid];`,
        `  let take = ai < 0 || (${nan('bv')} && (!${nan('av')} || bi < ai)) || (!${nan('av')} && !${nan('bv')} && (bv > av || (bv == av && bi < ai)));`,
        `  if (take) { sv[lid] = bv; si[lid] = bi; }`,
        `}`,
      ];
    }
    combine.push(`if (lid < ${s}u) {`, ...indent(step), '}', 'workgroupBarrier();');
  }
  const main = [
    `let gi = i32(wid.y * ${workgroups[0]}u + wid.x);`,
    `if (gi >= ${nOut}) { return; }`,
    ...decompose('gi', keptSizes, kept.map((d) => vars[d]!), 'q'),
    ...init, ...loop,
    k.op === 'argmax' ? 'sv[lid] = best;' : 'sv[lid] = acc;',
    ...(k.op === 'argmax' ? ['si[lid] = acc;'] : []),
    'workgroupBarrier();',
    ...combine,
    'if (lid == 0u) {',
    ...indent([k.op === 'argmax' ? 'let acc = max(si[0], 0);' : 'let acc = sv[0];', ...outer.lines, storeLine]),
    '}',
  ];
  return { decls, wg, main, workgroups };
}

const SUM_BLOCK = 64;

/**
 * A matmul kernel variant (what the autotuner picks per adapter and shape). Every variant sums each
 * output element's products in increasing k order, one product at a time, so variants agree bit for bit
 * up to the driver's contraction of multiply-adds.
 */
export interface MatmulVariant {
  /** output rows (m) per invocation: 1, 2, 4 or 8 */
  bm: number;
  /** output columns (n) per invocation: 4 or 8 */
  bn: number;
  /** invocations per workgroup along n (x) and m (y) */
  wg: [number, number];
  /** read float32 operands as vec4s where the layout and alignment allow (else scalar loads) */
  vec4: boolean;
  /** stage [TM x 16] / [16 x TN] slices of a and b in workgroup memory (real GPUs); else registers only */
  tiled: boolean;
}

/** The default: a 4x4 block per invocation, 8x8 invocations, vec4 loads where possible, no workgroup memory. */
export const DEFAULT_MATMUL: MatmulVariant = { bm: 4, bn: 4, wg: [8, 8], vec4: true, tiled: false };
/**
 * The untuned choice for an adapter: software adapters (lavapipe) run big products 1.5-3x faster with
 * 8x8 blocks (measured on the MLP's matmuls and 1024^3), but such shaders take about twice as long to
 * compile (~0.45 s vs ~0.23 s), so small products keep 4x4 blocks.
 */
export function defaultMatmul(software: boolean, work: number): MatmulVariant {
  return software && work >= 2 ** 18 ? SOFTWARE_BIG : DEFAULT_MATMUL;
}
const SOFTWARE_BIG: MatmulVariant = { bm: 8, bn: 8, wg: [8, 8], vec4: true, tiled: false };

const TILE_K = 16;

export const matmulVariantKey = (v: MatmulVariant): string => `${v.tiled ? 't' : 'r'}${v.bm}x${v.bn}@${v.wg[0]}x${v.wg[1]}${v.vec4 ? 'v' : 's'}`;

/** The variants the autotuner tries (those a device's limits allow; see `matmulVariantFits`). */
export function matmulCandidates(software: boolean): MatmulVariant[] {
  const r = (bm: number, bn: number, wx: number, wy: number): MatmulVariant => ({ bm, bn, wg: [wx, wy], vec4: true, tiled: false });
  const t = (bm: number, bn: number, wx: number, wy: number): MatmulVariant => ({ bm, bn, wg: [wx, wy], vec4: true, tiled: true });
  // Software adapters (lavapipe) compile each shader for hundreds of ms, so they get a short list: the
  // register-blocked shapes that won somewhere on lavapipe (8x8 blocks in several workgroup shapes win
  // on most products; 4x4 blocks on some narrow ones), best first (a tune cut short tries these first).
  // A single row of invocations per workgroup (wg [x, 1]) makes a's loads uniform across the workgroup.
  if (software) return [r(8, 8, 8, 8), r(8, 8, 32, 4), r(8, 8, 16, 1), r(4, 4, 8, 8), r(8, 8, 32, 1), r(4, 4, 4, 16)];
  return [
    t(4, 4, 16, 16), t(8, 4, 16, 16), t(4, 8, 16, 16), t(8, 8, 8, 8), t(4, 4, 8, 8), t(4, 8, 16, 8),
    r(4, 4, 16, 16), r(8, 4, 16, 8), r(4, 8, 16, 8), r(8, 8, 16, 16), r(2, 8, 16, 16), r(1, 8, 32, 8), r(8, 4, 64, 1),
  ];
}

/** Whether `v` fits a device's limits. */
export function matmulVariantFits(v: MatmulVariant, lim: WgslLimits): boolean {
  const inv = v.wg[0] * v.wg[1];
  if (inv > lim.maxComputeInvocationsPerWorkgroup) return false;
  if (v.tiled && 4 * TILE_K * (v.wg[0] * v.bn + v.wg[1] * v.bm) > lim.maxComputeWorkgroupStorageSize) return false;
  return true;
}

function checkVariant(v: MatmulVariant, name: string): void {
  if (![1, 2, 4, 8].includes(v.bm) || ![4, 8].includes(v.bn) || !(v.wg[0] >= 1 && v.wg[1] >= 1 && Number.isInteger(v.wg[0]) && Number.isInteger(v.wg[1]))) {
    throw new Error(`wgsl codegen: kernel '${name}': unsupported matmul variant ${JSON.stringify(v)}`);
  }
}

function matmulKernel(k: Extract<Kernel, { kind: 'matmul' }>, args: Args, lim: WgslLimits, name: string, v: MatmulVariant): Body {
  checkVariant(v, name);
  const a = operandLoad(k.a, 'a', name), b = operandLoad(k.b, 'b', name);
  const nb = k.batch.length;
  const bv = k.batch.map((_, i) => `z${i}`);
  const batch = k.batch.reduce((x, y) => x * y, 1);
  const [sam, sak] = a.view.strides.slice(nb), [sbk, sbn] = b.view.strides.slice(nb);
  const baseA = indexOf({ ...a.view, shape: k.batch, strides: a.view.strides.slice(0, nb) }, bv, args.off(a.arg));
  const baseB = indexOf({ ...b.view, shape: k.batch, strides: b.view.strides.slice(0, nb) }, bv, args.off(b.arg));
  const accType: DType = a.dtype === 'float32' || b.dtype === 'float32' ? 'float32' : 'int32';
  const at = wtype(accType);
  const { bm: BM, bn: BN } = v;
  const [WX, WY] = v.wg;
  const max = lim.maxComputeWorkgroupsPerDimension;
  const workgroups: [number, number, number] = [Math.ceil(k.n / (BN * WX)), Math.ceil(k.m / (BM * WY)), batch];
  if (k.m === 0 || k.n === 0 || batch === 0) workgroups[0] = 0;
  if (workgroups.some((g) => g > max)) throw new Error(`kiln: WebGPU kernel '${name}' needs a ${workgroups.join(' x ')} grid, more than this device's ${max} workgroups per dimension`);
  const ld = (buf: string, arg: number, dt: DType, idx: string) => conv(`${buf}[${idx}]`, args.storage(arg), dt === 'bool' ? 'int32' : accType);
  const head = [
    `let zz = i32(${v.tiled ? 'wid.z' : 'gid.z'});`,
    ...decompose('zz', k.batch, bv, 'zq'),
    `let pa = ${baseA};`,
    `let pb = ${baseB};`,
  ];
  const accs: string[] = [];
  for (let r = 0; r < BM; r++) for (let cv = 0; cv < BN / 4; cv++) accs.push(`var c${r}_${cv} = vec4<${at}>(0);`);
  const stores = blockStores(k, args, [...bv, 'i', 'j'], accType, BM, BN);

  if (v.tiled) {
    // Workgroup-memory tiles: TM x TILE_K of a and TILE_K x TN of b, loaded by all invocations with
    // bounds-checked scalar loads (zeros outside), then each invocation accumulates its BM x BN block.
    const TM = WY * BM, TN = WX * BN, NT = WX * WY;
    const A = args.buf(a.arg), B = args.buf(b.arg);
    const decls = [`var<workgroup> tA: array<${at}, ${TILE_K * TM}>;`, `var<workgroup> tB: array<${at}, ${TILE_K * TN}>;`];
    const aByM = sam === 1 && sak !== 1, bByN = sbn === 1 || sbk !== 1;
    const main = [
      ...head,
      `let tx = i32(lid) % ${WX};`,
      `let ty = i32(lid) / ${WX};`,
      `let row0 = i32(wid.y) * ${TM};`,
      `let col0 = i32(wid.x) * ${TN};`,
      `let i0 = row0 + ty * ${BM};`,
      `let j0 = col0 + tx * ${BN};`,
      ...accs,
      `for (var k0 = 0; k0 < ${k.k}; k0 = k0 + ${TILE_K}) {`,
      ...indent([
        `for (var e = i32(lid); e < ${TM * TILE_K}; e = e + ${NT}) {`,
        ...indent([
          aByM ? `let r = e % ${TM}; let q = e / ${TM};` : `let r = e / ${TILE_K}; let q = e % ${TILE_K};`,
          `let gi = row0 + r; let gk = k0 + q;`,
          `let x = ${ld(A, a.arg, a.dtype, `pa + min(gi, ${Math.max(0, k.m - 1)}) * ${sam} + min(gk, ${Math.max(0, k.k - 1)}) * ${sak}`)};`,
          `tA[q * ${TM} + r] = select(${at}(0), x, gi < ${k.m} && gk < ${k.k});`,
        ]),
        '}',
        `for (var e = i32(lid); e < ${TN * TILE_K}; e = e + ${NT}) {`,
        ...indent([
          bByN ? `let c = e % ${TN}; let q = e / ${TN};` : `let c = e / ${TILE_K}; let q = e % ${TILE_K};`,
          `let gj = col0 + c; let gk = k0 + q;`,
          `let x = ${ld(B, b.arg, b.dtype, `pb + min(gj, ${Math.max(0, k.n - 1)}) * ${sbn} + min(gk, ${Math.max(0, k.k - 1)}) * ${sbk}`)};`,
          `tB[q * ${TN} + c] = select(${at}(0), x, gj < ${k.n} && gk < ${k.k});`,
        ]),
        '}',
        'workgroupBarrier();',
        `for (var q = 0; q < ${TILE_K}; q = q + 1) {`,
        ...indent([
          `let ab = q * ${TM} + ty * ${BM};`,
          `let bb = q * ${TN} + tx * ${BN};`,
          ...Array.from({ length: BN / 4 }, (_, cv) => `let y${cv} = vec4<${at}>(tB[bb + ${4 * cv}], tB[bb + ${4 * cv + 1}], tB[bb + ${4 * cv + 2}], tB[bb + ${4 * cv + 3}]);`),
          ...Array.from({ length: BM }, (_, r) => [`let x${r} = tA[ab + ${r}];`, ...Array.from({ length: BN / 4 }, (_, cv) => `c${r}_${cv} = c${r}_${cv} + x${r} * y${cv};`)]).flat(),
        ]),
        '}',
        'workgroupBarrier();',
      ]),
      '}',
      ...stores,
    ];
    return { decls, wg: [WX, WY], main, workgroups };
  }

  // Register blocking. How each operand is read:
  //   a: 'k4' vec4 along k (row-major a; k % 4 == 0), 'm4' vec4 along m (a transposed a), 'scalar'
  //   b: 'n4' vec4 along n (row-major b), 'k4' vec4 along k (a transposed b, e.g. w.T; k % 4 == 0), 'scalar'
  const epiArgs = new Set(exprLoads(k.epilogue).map((l) => args.canon(l.arg)));
  const four = (xs: readonly number[]) => xs.every((x) => x % 4 === 0);
  const vecBase = v.vec4 && a.dtype === 'float32' && b.dtype === 'float32' && args.storage(a.arg) === 'float32' && args.storage(b.arg) === 'float32'
    && args.canon(a.arg) !== args.canon(b.arg)
    && !epiArgs.has(args.canon(a.arg)) && !epiArgs.has(args.canon(b.arg)) && args.canon(k.output.arg) !== args.canon(a.arg) && args.canon(k.output.arg) !== args.canon(b.arg);
  const vecA = vecBase && args.aligned?.[a.arg] === true && four([a.view.offset, ...a.view.strides.slice(0, nb)]);
  const vecB = vecBase && args.aligned?.[b.arg] === true && four([b.view.offset, ...b.view.strides.slice(0, nb)]);
  const modeA = vecA && sak === 1 && k.k % 4 === 0 && four([sam]) ? 'k4' : vecA && sam === 1 && four([sak]) && BM % 4 === 0 ? 'm4' : 'scalar';
  const modeB = vecB && sbn === 1 && four([sbk]) ? 'n4' : vecB && sbk === 1 && k.k % 4 === 0 && four([sbn]) ? 'k4' : 'scalar';
  const KS = modeA === 'k4' || modeB === 'k4' ? 4 : 1;
  const A = modeA === 'scalar' ? args.buf(a.arg) : args.bufVec4(a.arg);
  const B = modeB === 'scalar' ? args.buf(b.arg) : args.bufVec4(b.arg);
  const main = [
    `let j0 = i32(gid.x) * ${BN};`,
    // one row of invocations per workgroup: the rows come from the workgroup id, so a's loads are the same
    // for every invocation of the workgroup (software drivers load them once instead of per invocation)
    `let i0 = i32(${WY === 1 ? 'wid.y' : 'gid.y'}) * ${BM};`,
    `if (i0 >= ${k.m} || j0 >= ${k.n}) { return; }`,
    ...head,
  ];
  const body: string[] = [];
  // a value of row r at k step q (a scalar expression)
  let aval: (r: number, q: number) => string;
  if (modeA === 'k4') {
    for (let r = 0; r < BM; r++) main.push(`var pa${r} = (pa + min(i0 + ${r}, ${k.m - 1}) * ${sam}) / 4;`);
    for (let r = 0; r < BM; r++) body.push(`let xa${r} = ${A}[pa${r}];`, `pa${r} = pa${r} + 1;`);
    aval = (r, q) => `xa${r}.${'xyzw'[q]}`;
  } else if (modeA === 'm4') {
    // rows past m read whatever lies there (robust access); their results are never stored
    for (let g = 0; g < BM / 4; g++) main.push(`var pa${g} = (pa + i0 + ${4 * g}) / 4;`);
    for (let q = 0; q < KS; q++) for (let g = 0; g < BM / 4; g++) body.push(`let xa${g}_${q} = ${A}[pa${g}${q ? ` + ${(q * sak) / 4}` : ''}];`);
    for (let g = 0; g < BM / 4; g++) body.push(`pa${g} = pa${g} + ${(KS * sak) / 4};`);
    aval = (r, q) => `xa${r >> 2}_${q}.${'xyzw'[r & 3]}`;
  } else {
    for (let r = 0; r < BM; r++) main.push(`var pa${r} = pa + min(i0 + ${r}, ${k.m - 1}) * ${sam};`);
    for (let q = 0; q < KS; q++) for (let r = 0; r < BM; r++) body.push(`let xa${r}_${q} = ${ld(A, a.arg, a.dtype, `pa${r}${q ? ` + ${q * sak}` : ''}`)};`);
    for (let r = 0; r < BM; r++) body.push(`pa${r} = pa${r} + ${KS * sak};`);
    aval = (r, q) => `xa${r}_${q}`;
  }
  // b values of columns 4cv..4cv+3 at k step q (a vec4 expression)
  let bvec: (q: number, cv: number) => string;
  if (modeB === 'n4') {
    // columns past n: as rows past m above
    main.push(`var pb0 = (pb + j0) / 4;`);
    for (let q = 0; q < KS; q++) for (let cv = 0; cv < BN / 4; cv++) body.push(`let yb${q}_${cv} = ${B}[pb0 + ${(q * sbk) / 4 + cv}];`);
    body.push(`pb0 = pb0 + ${(KS * sbk) / 4};`);
    bvec = (q, cv) => `yb${q}_${cv}`;
  } else if (modeB === 'k4') {
    for (let c = 0; c < BN; c++) main.push(`var pb${c} = (pb + min(j0 + ${c}, ${k.n - 1}) * ${sbn}) / 4;`);
    for (let c = 0; c < BN; c++) body.push(`let yb${c} = ${B}[pb${c}];`, `pb${c} = pb${c} + 1;`);
    for (let q = 0; q < KS; q++) for (let cv = 0; cv < BN / 4; cv++) body.push(`let yv${q}_${cv} = vec4<f32>(${[0, 1, 2, 3].map((e) => `yb${4 * cv + e}.${'xyzw'[q]}`).join(', ')});`);
    bvec = (q, cv) => `yv${q}_${cv}`;
  } else {
    for (let c = 0; c < BN; c++) main.push(`var pb${c} = pb + min(j0 + ${c}, ${k.n - 1}) * ${sbn};`);
    for (let q = 0; q < KS; q++) {
      for (let cv = 0; cv < BN / 4; cv++) {
        body.push(`let yv${q}_${cv} = vec4<${at}>(${[0, 1, 2, 3].map((e) => ld(B, b.arg, b.dtype, `pb${4 * cv + e}${q ? ` + ${q * sbk}` : ''}`)).join(', ')});`);
      }
    }
    for (let c = 0; c < BN; c++) body.push(`pb${c} = pb${c} + ${KS * sbk};`);
    bvec = (q, cv) => `yv${q}_${cv}`;
  }
  for (let q = 0; q < KS; q++) for (let r = 0; r < BM; r++) for (let cv = 0; cv < BN / 4; cv++) body.push(`c${r}_${cv} = c${r}_${cv} + ${aval(r, q)} * ${bvec(q, cv)};`);
  main.push(...accs, `for (var kk = 0; kk < ${k.k / KS}; kk = kk + 1) {`, ...indent(body), '}', ...stores);
  return { decls: [], wg: [WX, WY], main, workgroups };
}

/**
 * The epilogue stores of a BM x BN register block held in vec4s c<r>_<cv> (columns 4cv..4cv+3): the
 * block is copied into a private array and one copy of the epilogue runs in a loop over its elements
 * (unrolling it BM x BN times made shader compilation several times slower on software adapters).
 */
function blockStores(k: Extract<Kernel, { kind: 'matmul' }>, args: Args, outVars: string[], accType: DType, BM: number, BN: number): string[] {
  const at = wtype(accType);
  const lines: string[] = [`var res: array<vec4<${at}>, ${(BM * BN) / 4}>;`];
  for (let r = 0; r < BM; r++) for (let cv = 0; cv < BN / 4; cv++) lines.push(`res[${(r * BN) / 4 + cv}] = c${r}_${cv};`);
  const epi = emitter(args, (v, arg) => indexOf(v, outVars, args.off(arg)), 'e', { name: 'acc', dtype: accType });
  const result = epi.emit(k.epilogue);
  const st = store(args, k.output, indexOf(k.output.view, outVars, args.off(k.output.arg)), result, k.epilogue.dtype);
  lines.push(`for (var qe = 0; qe < ${BM * BN}; qe = qe + 1) {`,
    ...indent([`let i = i0 + qe / ${BN};`, `let j = j0 + qe % ${BN};`, `if (i < ${k.m} && j < ${k.n}) {`,
      ...indent([`let acc = res[qe / 4][qe % 4];`, ...epi.lines, st]), '}']), '}');
  return lines;
}

function gatherKernel(k: Extract<Kernel, { kind: 'gather' }>, args: Args, lim: WgslLimits, name: string, cap: number): Body {
  const vars = k.shape.map((d, i) => (d === 1 ? null : `i${i}`));
  const live = k.shape.map((_, i) => i).filter((i) => k.shape[i] !== 1);
  const total = k.shape.reduce((a, b) => a * b, 1);
  const wg = Math.min(256, lim.maxComputeInvocationsPerWorkgroup);
  const em = emitter(args, (v, arg) => indexOf(v, vars, args.off(arg)), 'v');
  const idx = conv(em.emit(k.index), k.index.dtype, 'int32');
  const srcVars = vars.map((v, i) => (i === k.axis ? 'g' : v));
  const srcView = axisIndexedView(k.src.view, k.shape, k.axis);
  const srcBuf = args.buf(k.src.arg);
  const value = conv(`${srcBuf}[${indexOf(srcView, srcVars, args.off(k.src.arg))}]`, args.storage(k.src.arg), k.src.dtype);
  const { main, workgroups } = perElement(total, wg, cap, lim, name, [
    ...decompose('gi', live.map((d) => k.shape[d]), live.map((d) => vars[d]!), 'q'),
    ...em.lines,
    `let g = ${idx};`,
    store(args, k.output, indexOf(k.output.view, vars, args.off(k.output.arg)), value, k.src.dtype),
  ]);
  return { decls: [], wg, main, workgroups };
}

function scatterAddKernel(k: Extract<Kernel, { kind: 'scatterAdd' }>, args: Args, lim: WgslLimits, name: string, cap: number): Body {
  const outShape = k.output.view.shape;
  if (outShape.length !== k.srcShape.length) throw new Error(`wgsl codegen: kernel '${name}': scatterAdd output and source ranks differ`);
  const ovars = outShape.map((d, i) => (d === 1 ? null : `o${i}`));
  const live = outShape.map((_, i) => i).filter((i) => outShape[i] !== 1);
  const total = outShape.reduce((a, b) => a * b, 1);
  const wg = Math.min(256, lim.maxComputeInvocationsPerWorkgroup);
  // source position: the output's indices with the axis running over the source's extent
  const svars = k.srcShape.map((d, i) => (i === k.axis ? (d === 1 ? null : 'j') : d === 1 ? null : (ovars[i] ?? '0')));
  const em = emitter(args, (v, arg) => indexOf(v, svars, args.off(arg)), 'v');
  const idx = conv(em.emit(k.index), k.index.dtype, 'int32');
  const src = em.emit(k.src);
  const dt: DType = k.src.dtype === 'bool' ? 'int32' : k.src.dtype;
  const inRange = k.srcShape.map((d, i) => (i !== k.axis && d < outShape[i] ? `${ovars[i] ?? '0'} < ${d}` : null)).filter((c): c is string => c !== null);
  const axisVar = ovars[k.axis] ?? '0';
  const loop = [
    `for (var j = 0; j < ${k.srcShape[k.axis]}; j = j + 1) {`,
    ...indent([...em.lines, `if (${idx} == ${axisVar}) { acc = acc + ${conv(src, k.src.dtype, dt)}; }`]),
    '}',
  ];
  const { main, workgroups } = perElement(total, wg, cap, lim, name, [
    ...decompose('gi', live.map((d) => outShape[d]), live.map((d) => ovars[d]!), 'q'),
    `var acc: ${wtype(dt)} = 0;`,
    ...(inRange.length ? [`if (${inRange.join(' && ')}) {`, ...indent(loop), '}'] : loop),
    store(args, k.output, indexOf(k.output.view, ovars, args.off(k.output.arg)), 'acc', dt),
  ]);
  return { decls: [], wg, main, workgroups };
}

/** Bytes of the launch uniform of a kernel with `nargs` arguments and `nparams` params. */
export function uniformLayout(nargs: number, nparams: number): { a4: number; p4: number; bytes: number } {
  const a4 = Math.max(1, Math.ceil(nargs / 4)), p4 = Math.max(1, Math.ceil(nparams / 4));
  return { a4, p4, bytes: 16 * (a4 + 2 * p4) };
}

/**
 * Writes a launch's uniform (argument offsets in elements, then params as f32 and as i32) into the
 * views `i32`/`f32` of one buffer, starting at 4-byte word `at`.
 */
export function packUniform(i32: Int32Array, f32: Float32Array, at: number, nargs: number, nparams: number, offsets: readonly number[], params: readonly number[]): void {
  const { a4, p4 } = uniformLayout(nargs, nparams);
  for (let i = 0; i < nargs; i++) i32[at + i] = offsets[i] ?? 0;
  for (let i = 0; i < nparams; i++) {
    const v = params[i] ?? 0;
    f32[at + 4 * a4 + i] = v;
    i32[at + 4 * (a4 + p4) + i] = Number.isFinite(v) ? Math.trunc(v) | 0 : 0;
  }
}

/** The shader body of one kernel, by strategy. */
function kernelBody(k: Kernel, args: Args, lim: WgslLimits, name: string, cap: number, opts: WgslOptions): Body {
  switch (k.kind) {
    case 'map': return mapKernel(k, args, lim, name, cap);
    case 'reduce': return reduceKernel(k, args, lim, name, cap, opts.reduce ?? 'auto', opts.software ?? false);
    case 'matmul': return matmulKernel(k, args, lim, name, opts.matmul ?? DEFAULT_MATMUL);
    case 'gather': return gatherKernel(k, args, lim, name, cap);
    case 'scatterAdd': return scatterAddKernel(k, args, lim, name, cap);
    default: return unreachable(k, 'kernel');
  }
}

/** The WGSL compute shader of one kernel spec. Throws an Error naming the kernel when it cannot fit the device. */
export function wgslSource(spec: KernelSpec, opts: WgslOptions = {}): WgslKernel {
  const lim: WgslLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const args = new Args(spec, opts.alias, opts.aligned);
  const k = spec.kernel;
  const cap = Math.max(1, opts.maxWorkgroups ?? 4096);
  const body = kernelBody(k, args, lim, spec.name, cap, opts);
  const bindings = args.bindings();
  if (bindings.length > lim.maxStorageBuffersPerShaderStage) {
    throw new Error(`kiln: WebGPU kernel '${spec.name}' needs ${bindings.length} storage buffers, but this device allows ${lim.maxStorageBuffersPerShaderStage} per shader stage (maxStorageBuffersPerShaderStage); the kernel must be split`);
  }
  const { a4, p4, bytes } = uniformLayout(spec.args.length, spec.params);
  const wg = typeof body.wg === 'number' ? [body.wg, 1] : body.wg;
  if (wg[0] * wg[1] > lim.maxComputeInvocationsPerWorkgroup) {
    throw new Error(`kiln: WebGPU kernel '${spec.name}' needs ${wg[0] * wg[1]} invocations per workgroup, but this device allows ${lim.maxComputeInvocationsPerWorkgroup}`);
  }
  const offLines = [...args.offs].sort((x, y) => x - y).map((i) => `let ofs${i} = U.off[${i >> 2}][${i & 3}];`);
  const code = [
    `// kiln kernel ${spec.name} (${k.kind})`,
    `struct Launch { off: array<vec4<i32>, ${a4}>, pf: array<vec4<f32>, ${p4}>, pi: array<vec4<i32>, ${p4}> };`,
    `@group(0) @binding(0) var<uniform> U: Launch;`,
    ...bindings.map((b) => `@group(0) @binding(${b.binding}) var<storage, ${b.access}> b${b.arg}: array<${b.vec4 ? `vec4<${wtype(spec.args[b.arg].dtype)}>` : wtype(spec.args[b.arg].dtype)}>;`),
    ...body.decls,
    PRELUDE,
    `@compute @workgroup_size(${wg[0]}, ${wg[1]})`,
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(global_invocation_id) gid: vec3<u32>) {`,
    ...indent([...offLines, ...body.main]),
    '}',
    '',
  ].join('\n');
  return { name: spec.name, code, workgroups: body.workgroups, bindings, uniformBytes: bytes };
}
