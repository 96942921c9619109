// The WGSL matmul strategy and its variants (register blocks, vec4 loads, workgroup-memory tiles), which
// the autotuner (runtime/webgpu/autotune.ts) picks per adapter and shape; the epilogue runs per element.

import type { DType } from '../../../ir/dtype.ts';
import { isContiguous } from '../../../ir/view.ts';
import { exprLoads, type Kernel, type LoadExpr } from '../../../ir/kernel.ts';
import { indexOf, operandLoad } from '../emit.ts';
import { conv, wtype } from '../spelling-wgsl.ts';
import { blockCoords, blockEpilogue, decompose, emitter, indent, laneRounds, store, tiledKLoop, type Args, type Body, type WgslLimits } from './common.ts';

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
  /**
   * Register blocks whose a values a subgroup of this many lanes (the whole workgroup: wg [lanes, 1])
   * loads together, each lane one k step, and broadcasts (`subgroupBroadcast`); absent or 0: each
   * invocation loads its own. lavapipe (Mesa 25.0) loads every value of every lane one lane at a time,
   * with a bounds check, however uniform the address (its x86 listing, GALLIVM_DEBUG=asm), so this cuts
   * what the kernel spends on a's loads by the lane count: 1024^3 at 22.6 GFLOP/s against 11.4 for the
   * 8x1 reference kernel (2026-11-30). It counts on a workgroup of `lanes` invocations being one
   * subgroup whose lanes are numbered from 0, which WebGPU does not promise: the runtime checks it once
   * per device (runtime/webgpu/subgroup-probe.ts) and otherwise reports no subgroups to codegen.
   */
  lanes?: number;
}

/**
 * The variant when none is given: a 4x4 block per invocation, 8x8 invocations, vec4 loads where
 * possible, no workgroup memory. Which variant an adapter uses is the autotuner's policy
 * (runtime/webgpu/autotune.ts).
 */
export const DEFAULT_MATMUL: MatmulVariant = { bm: 4, bn: 4, wg: [8, 8], vec4: true, tiled: false };
const TILE_K = 16;

/**
 * The lane count of kiln's subgroup variants (`lanes`: matmul and convolution) on a device whose
 * subgroups hold at least `subgroupMinSize` invocations: 8, else 4, else 0 (none).
 */
export const subgroupLanes = (subgroupMinSize: number): number => (subgroupMinSize >= 8 ? 8 : subgroupMinSize >= 4 ? 4 : 0);

export const matmulVariantKey = (v: MatmulVariant): string => `${v.tiled ? 't' : 'r'}${v.bm}x${v.bn}@${v.wg[0]}x${v.wg[1]}${v.vec4 ? 'v' : 's'}${v.lanes ? `+sg${v.lanes}` : ''}`;

/** Whether `v` fits a device's limits. */
export function matmulVariantFits(v: MatmulVariant, lim: WgslLimits): boolean {
  const inv = v.wg[0] * v.wg[1];
  if (inv > lim.maxComputeInvocationsPerWorkgroup) return false;
  if (v.tiled && 4 * TILE_K * (v.wg[0] * v.bn + v.wg[1] * v.bm) > lim.maxComputeWorkgroupStorageSize) return false;
  // the workgroup must lie in one subgroup, whatever size the driver picks
  if (v.lanes && lim.subgroupMinSize < v.lanes) return false;
  return true;
}

function checkVariant(v: MatmulVariant, name: string): void {
  const lanesOk = !v.lanes || ([4, 8].includes(v.lanes) && !v.tiled && v.wg[0] === v.lanes && v.wg[1] === 1);
  if (![1, 2, 4, 8].includes(v.bm) || ![4, 8].includes(v.bn) || !lanesOk || !(v.wg[0] >= 1 && v.wg[1] >= 1 && Number.isInteger(v.wg[0]) && Number.isInteger(v.wg[1]))) {
    throw new Error(`wgsl codegen: kernel '${name}': unsupported matmul variant ${JSON.stringify(v)}`);
  }
}

export function matmulKernel(k: Extract<Kernel, { kind: 'matmul' }>, args: Args, lim: WgslLimits, name: string, v: MatmulVariant): Body {
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
  if (v.tiled) {
    const stores = blockStores(k, args, [...bv, 'i', 'j'], accType, BM, BN);
    // Workgroup-memory tiles: TM x TILE_K of a and TILE_K x TN of b, loaded by all invocations with
    // bounds-checked scalar loads (zeros outside), then each invocation accumulates its BM x BN block.
    const TM = WY * BM, TN = WX * BN, NT = WX * WY;
    const A = args.buf(a.arg), B = args.buf(b.arg);
    const decls = [`var<workgroup> tA: array<${at}, ${TILE_K * TM}>;`, `var<workgroup> tB: array<${at}, ${TILE_K * TN}>;`];
    const aByM = sam === 1 && sak !== 1, bByN = sbn === 1 || sbk !== 1;
    // Stages `len` rows (from `row0`) x TILE_K of an operand: tile[q * len + r] = op[row0 + r, k0 + q],
    // zeros outside; `byRow`: consecutive invocations take consecutive rows (the operand's contiguous dim).
    const stage = (tile: string, len: number, byRow: boolean, row0: string, rows: number, buf: string, op: LoadExpr, base: string, sRow: number, sK: number): string[] => [
      `for (var e = i32(lid); e < ${len * TILE_K}; e = e + ${NT}) {`,
      ...indent([
        byRow ? `let r = e % ${len}; let q = e / ${len};` : `let r = e / ${TILE_K}; let q = e % ${TILE_K};`,
        `let gr = ${row0} + r; let gk = k0 + q;`,
        `let x = ${ld(buf, op.arg, op.dtype, `${base} + min(gr, ${Math.max(0, rows - 1)}) * ${sRow} + min(gk, ${Math.max(0, k.k - 1)}) * ${sK}`)};`,
        `${tile}[q * ${len} + r] = select(${at}(0), x, gr < ${rows} && gk < ${k.k});`,
      ]),
      '}',
    ];
    const main = [
      ...head,
      ...blockCoords(WX, TM, TN, BM, BN),
      ...accs,
      ...tiledKLoop(k.k, TILE_K, TM, TN, BM, BN, at, [
        ...stage('tA', TM, aByM, 'row0', k.m, A, a, 'pa', sam, sak),
        ...stage('tB', TN, bByN, 'col0', k.n, B, b, 'pb', sbn, sbk),
      ]),
      ...stores,
    ];
    return { decls, wg: [WX, WY], main, workgroups };
  }

  // Register blocking. How each operand is read:
  //   a: 'k4' vec4 along k (row-major a; k % 4 == 0), 'm4' vec4 along m (a transposed a), 'scalar',
  //      'lanes' one scalar per lane and k step, broadcast to the subgroup (v.lanes)
  //   b: 'n4' vec4 along n (row-major b), 'k4' vec4 along k (a transposed b, e.g. w.T; k % 4 == 0), 'scalar'
  const epiArgs = new Set(exprLoads(k.epilogue).map((l) => args.canon(l.arg)));
  const four = (xs: readonly number[]) => xs.every((x) => x % 4 === 0);
  const vecBase = v.vec4 && a.dtype === 'float32' && b.dtype === 'float32' && args.storage(a.arg) === 'float32' && args.storage(b.arg) === 'float32'
    && args.canon(a.arg) !== args.canon(b.arg)
    && !epiArgs.has(args.canon(a.arg)) && !epiArgs.has(args.canon(b.arg)) && args.canon(k.output.arg) !== args.canon(a.arg) && args.canon(k.output.arg) !== args.canon(b.arg);
  const vecA = vecBase && args.aligned?.[a.arg] === true && four([a.view.offset, ...a.view.strides.slice(0, nb)]);
  const vecB = vecBase && args.aligned?.[b.arg] === true && four([b.view.offset, ...b.view.strides.slice(0, nb)]);
  const S = v.lanes ?? 0;
  const modeA = S ? 'lanes' : vecA && sak === 1 && k.k % 4 === 0 && four([sam]) ? 'k4' : vecA && sam === 1 && four([sak]) && BM % 4 === 0 ? 'm4' : 'scalar';
  const modeB = vecB && sbn === 1 && four([sbk]) ? 'n4' : vecB && sbk === 1 && k.k % 4 === 0 && four([sbn]) ? 'k4' : 'scalar';
  const KS = modeA === 'k4' || modeB === 'k4' ? 4 : 1;
  const A = modeA === 'scalar' || modeA === 'lanes' ? args.buf(a.arg) : args.bufVec4(a.arg);
  const B = modeB === 'scalar' ? args.buf(b.arg) : args.bufVec4(b.arg);
  const main = [
    `let j0 = i32(gid.x) * ${BN};`,
    // one row of invocations per workgroup: the rows come from the workgroup id, so every invocation of
    // the workgroup reads the same a values (lavapipe still loads them lane by lane: see `lanes`)
    `let i0 = i32(${WY === 1 ? 'wid.y' : 'gid.y'}) * ${BM};`,
    // a subgroup's lanes share a's loads, so lanes past n stay to the end (they read clamped or
    // robust-access values and store nothing)
    S ? `if (i0 >= ${k.m}) { return; }` : `if (i0 >= ${k.m} || j0 >= ${k.n}) { return; }`,
    ...head,
  ];
  // One k step's (KS steps') loads, at `kk` (in units of KS steps), and their products.
  const loads: string[] = [];
  // Operands are indexed from the k loop's counter (fixed row/column bases times kk), not by pointers
  // advanced every step: SwiftShader ran a 256^3 product ~10% faster so (10.0-10.5 -> 8.9-9.4 ms).
  // a value of row r at k step q (a scalar expression); with lanes, of the t-th KS steps of a round
  let aval: (r: number, q: number, t: number) => string;
  if (modeA === 'k4') {
    for (let r = 0; r < BM; r++) main.push(`let pa${r} = (pa + min(i0 + ${r}, ${k.m - 1}) * ${sam}) / 4;`);
    for (let r = 0; r < BM; r++) loads.push(`let xa${r} = ${A}[pa${r} + kk];`);
    aval = (r, q) => `xa${r}.${'xyzw'[q]}`;
  } else if (modeA === 'm4') {
    // rows past m read whatever lies there (robust access); their results are never stored
    for (let g = 0; g < BM / 4; g++) main.push(`let pa${g} = (pa + i0 + ${4 * g}) / 4;`);
    loads.push(`let pak = kk * ${(KS * sak) / 4};`);
    for (let q = 0; q < KS; q++) for (let g = 0; g < BM / 4; g++) loads.push(`let xa${g}_${q} = ${A}[pa${g} + pak${q ? ` + ${(q * sak) / 4}` : ''}];`);
    aval = (r, q) => `xa${r >> 2}_${q}.${'xyzw'[r & 3]}`;
  } else {
    for (let r = 0; r < BM; r++) main.push(`let pa${r} = pa + min(i0 + ${r}, ${k.m - 1}) * ${sam};`);
    if (modeA === 'lanes') {
      aval = (r, q, t) => `subgroupBroadcast(av${r}, ${t * KS + q}u)`;
    } else {
      loads.push(`let pak = kk * ${KS * sak};`);
      for (let q = 0; q < KS; q++) for (let r = 0; r < BM; r++) loads.push(`let xa${r}_${q} = ${ld(A, a.arg, a.dtype, `pa${r} + pak${q ? ` + ${q * sak}` : ''}`)};`);
      aval = (r, q) => `xa${r}_${q}`;
    }
  }
  // b values of columns 4cv..4cv+3 at k step q (a vec4 expression)
  let bvec: (q: number, cv: number) => string;
  if (modeB === 'n4') {
    // columns past n: as rows past m above
    main.push(`let pb0 = (pb + j0) / 4;`);
    loads.push(`let pbk = pb0 + kk * ${(KS * sbk) / 4};`);
    for (let q = 0; q < KS; q++) for (let cv = 0; cv < BN / 4; cv++) loads.push(`let yb${q}_${cv} = ${B}[pbk + ${(q * sbk) / 4 + cv}];`);
    bvec = (q, cv) => `yb${q}_${cv}`;
  } else if (modeB === 'k4') {
    for (let c = 0; c < BN; c++) main.push(`let pb${c} = (pb + min(j0 + ${c}, ${k.n - 1}) * ${sbn}) / 4;`);
    for (let c = 0; c < BN; c++) loads.push(`let yb${c} = ${B}[pb${c} + kk];`);
    for (let q = 0; q < KS; q++) for (let cv = 0; cv < BN / 4; cv++) loads.push(`let yv${q}_${cv} = vec4<f32>(${[0, 1, 2, 3].map((e) => `yb${4 * cv + e}.${'xyzw'[q]}`).join(', ')});`);
    bvec = (q, cv) => `yv${q}_${cv}`;
  } else {
    for (let c = 0; c < BN; c++) main.push(`let pb${c} = pb + min(j0 + ${c}, ${k.n - 1}) * ${sbn};`);
    loads.push(`let pbk = kk * ${KS * sbk};`);
    for (let q = 0; q < KS; q++) {
      for (let cv = 0; cv < BN / 4; cv++) {
        loads.push(`let yv${q}_${cv} = vec4<${at}>(${[0, 1, 2, 3].map((e) => ld(B, b.arg, b.dtype, `pb${4 * cv + e} + pbk${q ? ` + ${q * sbk}` : ''}`)).join(', ')});`);
      }
    }
    bvec = (q, cv) => `yv${q}_${cv}`;
  }
  const step = (t: number): string[] => {
    const out = [...loads];
    for (let q = 0; q < KS; q++) for (let r = 0; r < BM; r++) for (let cv = 0; cv < BN / 4; cv++) out.push(`c${r}_${cv} = c${r}_${cv} + ${aval(r, q, t)} * ${bvec(q, cv)};`);
    return out;
  };
  // The trip count is hidden from the shader compiler (an element offset is never negative, so the
  // min is 0): software drivers fully unroll constant short loops, which made lavapipe spend seconds
  // compiling small-k matmuls at their first dispatch.
  const zero = `min(${args.off(a.arg)}, 0)`;
  let kLoop: string[];
  if (modeA === 'lanes') {
    // Rounds of S k steps: lane l loads a's rows at step l, then S / KS blocks of KS steps each
    // broadcast the steps they need.
    kLoop = [
      ...laneRounds(k.k, S, zero, (first, ka, steps) => [
        `let ka = ${ka};`,
        ...Array.from({ length: BM }, (_, r) => `let av${r} = ${ld(A, a.arg, a.dtype, `pa${r} + ka * ${sak}`)};`),
        ...Array.from({ length: steps / KS }, (_, t) => ['{', ...indent([`let kk = ${first(KS)} + ${t};`, ...step(t)]), '}']).flat(),
      ]),
      `if (j0 >= ${k.n}) { return; }`,
    ];
  } else {
    kLoop = [`let kn = ${k.k / KS} + ${zero};`, `for (var kk = 0; kk < kn; kk = kk + 1) {`, ...indent(step(0)), '}'];
  }
  // a plain product into a contiguous, 4-aligned float32 output whose rows hold whole vec4s: the block's
  // rows are stored as vec4s (per-element stores and bounds checks cost small-k products ~10% on
  // software adapters)
  const o = k.output;
  const vecOut = vecBase && k.epilogue.kind === 'acc' && accType === 'float32' && args.storage(o.arg) === 'float32' && k.n % 4 === 0
    && args.aligned?.[o.arg] === true && o.view.offset % 4 === 0 && isContiguous(o.view) && !epiArgs.has(args.canon(o.arg));
  const stores = vecOut ? vec4Stores(k, args, bv, BM, BN) : blockStores(k, args, [...bv, 'i', 'j'], accType, BM, BN);
  main.push(...accs, ...kLoop, ...stores);
  return { decls: [], wg: [WX, WY], main, workgroups, subgroups: S > 0 };
}

/** Stores of a BM x BN block c<r>_<cv> as vec4s, row by row (a loop with a hidden trip count, as blockEpilogue). */
function vec4Stores(k: Extract<Kernel, { kind: 'matmul' }>, args: Args, bv: string[], BM: number, BN: number): string[] {
  const out = args.bufVec4(k.output.arg, true);
  const pick = (cv: number) => Array.from({ length: BM - 1 }, (_, r) => r + 1).reduce((e, r) => `select(${e}, c${r}_${cv}, qr == ${r})`, `c0_${cv}`);
  return [
    `for (var qr = 0; qr < ${BM} + min(${args.off(k.output.arg)}, 0); qr = qr + 1) {`,
    ...indent([
      'let i = i0 + qr;',
      `if (i >= ${k.m}) { break; }`,
      `let q = (${indexOf(k.output.view, [...bv, 'i', 'j0'], args.off(k.output.arg))}) / 4;`,
      // n % 4 == 0 and j0 % 4 == 0: each vec4 of columns is wholly inside or wholly outside
      ...Array.from({ length: BN / 4 }, (_, cv) => (cv === 0 ? `${out}[q] = ${pick(0)};` : `if (j0 + ${4 * cv} < ${k.n}) { ${out}[q + ${cv}] = ${pick(cv)}; }`)),
    ]),
    '}',
  ];
}

/** The epilogue stores of a BM x BN register block held in vec4s c<r>_<cv> (common.ts blockEpilogue). */
function blockStores(k: Extract<Kernel, { kind: 'matmul' }>, args: Args, outVars: string[], accType: DType, BM: number, BN: number): string[] {
  const epi = emitter(args, (v, arg) => indexOf(v, outVars, args.off(arg)), 'e', { name: 'acc', dtype: accType });
  const result = epi.emit(k.epilogue);
  const st = store(args, k.output, indexOf(k.output.view, outVars, args.off(k.output.arg)), result, k.epilogue.dtype);
  return blockEpilogue(BM, BN, 'i', k.m, k.n, `min(${args.off(k.output.arg)}, 0)`, [...epi.lines, st]);
}
