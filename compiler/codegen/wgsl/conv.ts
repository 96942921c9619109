// The WebGPU convolution strategy: an implicit GEMM. Per group, the output [Og, N * P] is the product
// of the weight [Og, Cg * K] and the unfolded input [Cg * K, N * P], but the unfolded input is never
// stored: each workgroup stages a TK x TN slice of it in workgroup memory straight from the input
// (zeros for padding and for the gaps of a dilated input), and a TM x TK slice of the weight, then every
// invocation accumulates a BM x BN register block and applies the fused epilogue (bias, activation, an
// optimizer update) to it. Operands are read through their views, so a permuted operand (both
// gradients) is read in place. Tiles fit the WebGPU defaults every device has (64 invocations, 4 KiB
// of workgroup memory).
//
// On software adapters with subgroups (`lanes`: 8 on lavapipe, 4 on SwiftShader) the same product runs
// without workgroup memory, as the matmul's lanes variant does (wgsl/matmul.ts): a workgroup is one
// subgroup, each lane an 8 x 4 block (8 output channels, 4 output columns), and in each round of
// `lanes` reduction steps lane l loads the weight's 8 values at step l and `subgroupBroadcast` hands
// them to every lane; each lane reads its own 4 columns of the unfolded input. lavapipe loads lane by
// lane and pays for every barrier, so the tiled kernel ran at ~2 GFLOP/s there.

import { convGeometry, type ConvKernel } from '../../../ir/conv.ts';
import { numel } from '../../../ir/shape.ts';
import { indexOf } from '../emit.ts';
import { conv } from '../spelling-wgsl.ts';
import { blockCoords, blockEpilogue, emitter, indent, laneRounds, store, tiledKLoop, type Args, type Body, type WgslLimits } from './common.ts';

const BM = 4, BN = 4, WX = 8, WY = 8, TK = 16;
const TM = BM * WY, TN = BN * WX, NT = WX * WY;

/** Splits flat index `flat` over `sizes` (row-major) into `let` variables `vars`. */
function split(flat: string, sizes: readonly number[], vars: readonly string[]): string[] {
  const lines: string[] = [];
  let r = flat;
  for (let d = sizes.length - 1; d >= 1; d--) {
    lines.push(`let ${vars[d]} = ${r} % ${sizes[d]};`);
    lines.push(`let ${vars[d]}_q = ${r} / ${sizes[d]};`);
    r = `${vars[d]}_q`;
  }
  if (sizes.length) lines.push(`let ${vars[0]} = ${r};`);
  return lines;
}

const term = (v: string, s: number): string[] => (s === 0 ? [] : [s === 1 ? v : `${v} * ${s}`]);

/** What both strategies build a convolution from: its geometry, and its loads, positions and epilogue as WGSL. */
interface ConvParts {
  k: ConvKernel;
  args: Args;
  name: string;
  lim: WgslLimits;
  G: number; Og: number; KP: number; P: number; Kc: number; cols: number;
  K: readonly number[]; O: readonly number[];
  /** the input's spatial sizes and strides, and the convolution's attributes */
  S: readonly number[]; xs: readonly number[]; attrs: ConvKernel['attrs'];
  /** names of the window position (kw<d>) and of the output position (p<d>), one per spatial dim */
  kv: string[]; ov: string[];
  /** an element of `arg` at `idx`, as f32 */
  read(arg: number, idx: string): string;
  /** the index of w[g, gi, c, window position `kn`] (the window reversed when flipped) */
  wIdx(gi: string, c: string, kn: readonly string[]): string;
  /**
   * where output position p<d><sfx> and window position kw<d> read the input: lets y<d><sfx>, ok<d><sfx>
   * (conditions joined with `&`, never `&&`: a short-circuit `&&` becomes a branch, and SwiftShader took
   * 3 s to compile three unrolled steps of such branches and lost the device on four)
   */
  pos(sfx: string): string[];
  /** whether that position lies inside the input (not in the padding nor in the gaps of a dilated input) */
  ok(sfx: string): string;
  /** the index of x[b<sfx>, g, c, y<sfx>] (without the argument's launch offset) */
  xIdx(sfx: string): string;
  /** 0 at run time, hiding loop counts from the shader compiler (blockEpilogue) */
  zero: string;
  /** the epilogue of a bm x 4 block c<r>_0 at (i0, j0): one output column j (image n, position p) of row o */
  blockEnd(bm: number): string[];
  /** the workgroup grid [column blocks, row blocks, groups] for tiles of `tm` rows and `tn` columns */
  grid(tm: number, tn: number): [number, number, number];
}

/** The convolution's shader body: workgroup-memory tiles, or with `lanes` (and subgroups that large) subgroup rounds. */
export function convKernel(k: ConvKernel, args: Args, lim: WgslLimits, name: string, lanes = 0): Body {
  const parts = convParts(k, args, lim, name);
  return lanes > 0 && lim.subgroupMinSize >= lanes ? lanesConv(parts, lanes) : tiledConv(parts);
}

function convParts(k: ConvKernel, args: Args, lim: WgslLimits, name: string): ConvParts {
  const read = (arg: number, idx: string): string => conv(`${args.buf(arg)}[${idx}]`, args.storage(arg), 'float32');
  /** the epilogue with the accumulator `acc` at the output index `vars` (one name per output dim), stored */
  const epilogue = (vars: string[]): string[] => {
    const epi = emitter(args, (v, arg) => indexOf(v, vars, args.off(arg)), 'e', { name: 'acc', dtype: 'float32' });
    const result = epi.emit(k.epilogue);
    return [...epi.lines, store(args, k.output, indexOf(k.output.view, vars, args.off(k.output.arg)), result, k.epilogue.dtype)];
  };
  const a = k.attrs;
  const { n: N, groups: G, cin: Cg, cout: Og, kernel: K, outSize: O, inSize: S } = convGeometry(k.x.view.shape, k.w.view.shape, a);
  const KP = numel(K), P = numel(O), Kc = Cg * KP, cols = N * P;
  const xs = k.x.view.strides, ws = k.w.view.strides;
  const kv = K.map((_, d) => `kw${d}`), ov = O.map((_, d) => `p${d}`);
  const zero = `min(${args.off(k.x.arg)}, 0)`;
  return {
    k, args, name, lim, G, Og, KP, P, Kc, cols, K, O, S, xs, attrs: a, kv, ov, read, zero,
    wIdx: (gi, c, kn) => [args.off(k.w.arg), String(k.w.view.offset), ...term('g', ws[0]), ...term(gi, ws[1]), ...term(c, ws[2]),
      ...K.flatMap((kk, d) => term(a.flip ? `(${kk - 1} - ${kn[d]})` : kn[d], ws[3 + d]))].join(' + '),
    pos: (sfx) => S.flatMap((s, d) => {
      const q = `${ov[d]}${sfx} * ${a.stride[d]} + ${kv[d]} * ${a.dilation[d]} - ${a.padLo[d]}`;
      const ld = a.lhsDilation[d];
      return ld === 1
        ? [`let y${d}${sfx} = ${q};`, `let ok${d}${sfx} = (y${d}${sfx} >= 0) & (y${d}${sfx} < ${s});`]
        : [`let t${d}${sfx} = ${q};`, `let y${d}${sfx} = t${d}${sfx} / ${ld};`, `let ok${d}${sfx} = (t${d}${sfx} >= 0) & (t${d}${sfx} % ${ld} == 0) & (y${d}${sfx} < ${s});`];
    }),
    ok: (sfx) => S.map((_, d) => `ok${d}${sfx}`).join(' & '),
    xIdx: (sfx) => [String(k.x.view.offset), ...term(`b${sfx}`, xs[0]), ...term('g', xs[1]), ...term('c', xs[2]), ...S.flatMap((_, d) => term(`y${d}${sfx}`, xs[3 + d]))].join(' + '),
    blockEnd: (bm) => blockEpilogue(bm, BN, 'o', Og, cols, zero, [
      `let n = j / ${P};`,
      ...split(`(j % ${P})`, O, ov),
      ...epilogue(a.outPerm.map((d) => ['n', 'g', 'o', ...ov][d])),
    ]),
    grid: (tm, tn) => {
      const groups: [number, number, number] = [Math.ceil(cols / tn), Math.ceil(Og / tm), G];
      if (cols === 0 || Og === 0 || G === 0) groups[0] = 0;
      const max = lim.maxComputeWorkgroupsPerDimension;
      if (groups.some((g) => g > max)) throw new Error(`kiln: WebGPU kernel '${name}' (convolution) needs a ${groups.join(' x ')} grid, more than this device's ${max} workgroups per dimension`);
      return groups;
    },
  };
}

/** Workgroup-memory tiles: TM x TK of the weight and TK x TN of the unfolded input per step. */
function tiledConv(parts: ConvParts): Body {
  const { k, args, lim, name, Og, KP, P, Kc, cols, K, O, kv, ov, read } = parts;
  if (NT > lim.maxComputeInvocationsPerWorkgroup || 4 * TK * (TM + TN) > lim.maxComputeWorkgroupStorageSize) {
    throw new Error(`kiln: WebGPU kernel '${name}' (convolution) needs ${NT} invocations and ${4 * TK * (TM + TN)} bytes of workgroup memory; this device allows ${lim.maxComputeInvocationsPerWorkgroup} and ${lim.maxComputeWorkgroupStorageSize}`);
  }
  const workgroups = parts.grid(TM, TN);
  // A slice: weight rows row0.., reduction positions k0..
  const loadA = [
    `for (var e = i32(lid); e < ${TM * TK}; e = e + ${NT}) {`,
    ...indent([
      `let r = e / ${TK}; let q = e % ${TK};`,
      `let gi = min(row0 + r, ${Og - 1}); let gk = min(k0 + q, ${Kc - 1});`,
      `let c = gk / ${KP};`,
      ...split(`(gk % ${KP})`, K, kv),
      `let v = ${read(k.w.arg, parts.wIdx('gi', 'c', kv))};`,
      `tA[q * ${TM} + r] = select(0.0, v, row0 + r < ${Og} && k0 + q < ${Kc});`,
    ]),
    '}',
  ];
  // B slice: the unfolded input at reduction positions k0.. and output columns col0.. (image, position).
  const loadB = [
    `for (var e = i32(lid); e < ${TN * TK}; e = e + ${NT}) {`,
    ...indent([
      `let q = e / ${TN}; let cc = e % ${TN};`,
      `let gj = min(col0 + cc, ${cols - 1}); let gk = min(k0 + q, ${Kc - 1});`,
      `let b = gj / ${P}; let c = gk / ${KP};`,
      ...split(`(gj % ${P})`, O, ov),
      ...split(`(gk % ${KP})`, K, kv),
      ...parts.pos(''),
      `let inside = ${parts.ok('')} & (col0 + cc < ${cols}) & (k0 + q < ${Kc});`,
      `let v = ${read(k.x.arg, `${args.off(k.x.arg)} + select(0, ${parts.xIdx('')}, inside)`)};`,
      `tB[q * ${TN} + cc] = select(0.0, v, inside);`,
    ]),
    '}',
  ];
  const main = [
    `let g = i32(wid.z);`,
    ...blockCoords(WX, TM, TN, BM, BN),
    ...Array.from({ length: BM }, (_, r) => `var c${r}_0 = vec4<f32>(0.0);`),
    ...tiledKLoop(Kc, TK, TM, TN, BM, BN, 'f32', [...loadA, ...loadB]),
    ...parts.blockEnd(BM),
  ];
  const decls = [`var<workgroup> tA: array<f32, ${TK * TM}>;`, `var<workgroup> tB: array<f32, ${TK * TN}>;`];
  return { decls, wg: [WX, WY], main, workgroups };
}

/**
 * Subgroup rounds (software adapters): a workgroup is one subgroup of `lanes` lanes, each an LM x 4
 * block; per round of `lanes` reduction steps, lane l loads the weight's LM values at step l and every
 * step broadcasts them to the lanes, which read their own 4 columns of the unfolded input.
 */
function lanesConv(parts: ConvParts, lanes: number): Body {
  const { k, args, Og, KP, P, Kc, cols, K, O, S, xs, attrs: a, kv, ov, read } = parts;
  const LM = 8;
  const workgroups = parts.grid(LM, lanes * BN);
  const rows = Array.from({ length: LM }, (_, r) => r), columns = Array.from({ length: BN }, (_, col) => col);
  const kva = K.map((_, d) => `kwa${d}`);
  // Without gaps in the input (lhsDilation 1, all but a strided convolution's input gradient) a
  // column's input index is its own base plus the step's offset, and a position is inside when its
  // u32 is below the size: the lane's index work per step is a few adds and compares (lavapipe ran
  // the CNN's conv2 1.4x faster so than with the full position per step).
  const linear = a.lhsDilation.every((l) => l === 1);
  const x0 = `${args.off(k.x.arg)} + ${k.x.view.offset}`;
  const columnLets = (col: number): string[] => linear
    ? [...S.map((_, d) => `let q${d}_${col} = ${ov[d]}_${col} * ${a.stride[d]} - ${a.padLo[d]};`),
      `let xb_${col} = ${[x0, ...term(`b_${col}`, xs[0]), ...term('g', xs[1]), ...S.flatMap((_, d) => term(`q${d}_${col}`, xs[3 + d]))].join(' + ')};`]
    : [];
  const stepLets = linear
    ? [...S.map((_, d) => `let kd${d} = ${kv[d]} * ${a.dilation[d]};`), `let kx = ${[...term('c', xs[2]), ...S.flatMap((_, d) => term(`kd${d}`, xs[3 + d])), '0'].join(' + ')};`]
    : [];
  const columnValue = (col: number): string[] => {
    if (!linear) return [...parts.pos(`_${col}`), `let v${col} = select(0.0, ${read(k.x.arg, `${args.off(k.x.arg)} + select(0, ${parts.xIdx(`_${col}`)}, ${parts.ok(`_${col}`)})`)}, ${parts.ok(`_${col}`)});`];
    const inside = S.map((s, d) => `(u32(q${d}_${col} + kd${d}) < ${s}u)`).join(' & ');
    return [`let in${col} = ${inside};`, `let v${col} = select(0.0, ${read(k.x.arg, `select(${x0}, xb_${col} + kx, in${col})`)}, in${col});`];
  };
  // A round of reduction steps (laneRounds): the lane's weight values at its step `ka`, then for each
  // step the lane's 4 columns of the unfolded input times each row's broadcast weight.
  const round = (first: (per: number) => string, ka: string, steps: number): string[] => [
    `let ka = ${ka};`,
    `let ca = ka / ${KP};`,
    ...split(`(ka % ${KP})`, K, kva),
    ...rows.map((r) => `let av${r} = ${read(k.w.arg, parts.wIdx(`min(i0 + ${r}, ${Og - 1})`, 'ca', kva))};`),
    ...Array.from({ length: steps }, (_, t) => ['{', ...indent([
      `let gk = ${first(1)} + ${t};`,
      `let c = gk / ${KP};`,
      ...split(`(gk % ${KP})`, K, kv),
      ...stepLets,
      ...columns.flatMap(columnValue),
      `let yb = vec4<f32>(${columns.map((col) => `v${col}`).join(', ')});`,
      ...rows.map((r) => `c${r}_0 = c${r}_0 + subgroupBroadcast(av${r}, ${t}u) * yb;`),
    ]), '}']).flat(),
  ];
  const main = [
    `let g = i32(wid.z);`,
    `let i0 = i32(wid.y) * ${LM};`,
    `let j0 = i32(gid.x) * ${BN};`,
    // the subgroup shares its weight loads: lanes past the output's columns stay to the end, on clamped columns
    `if (i0 >= ${Og}) { return; }`,
    ...columns.flatMap((col) => [`let gj_${col} = min(j0 + ${col}, ${cols - 1});`, `let b_${col} = gj_${col} / ${P};`, ...split(`(gj_${col} % ${P})`, O, ov.map((v) => `${v}_${col}`)), ...columnLets(col)]),
    ...rows.map((r) => `var c${r}_0 = vec4<f32>(0.0);`),
    ...laneRounds(Kc, lanes, parts.zero, round),
    `if (j0 >= ${cols}) { return; }`,
    ...parts.blockEnd(LM),
  ];
  return { decls: [], wg: [lanes, 1], main, workgroups, subgroups: true };
}
