// The WebGPU convolution strategy: an implicit GEMM. Per group, the output [Og, N * P] is the product
// of the weight [Og, Cg * K] and the unfolded input [Cg * K, N * P], but the unfolded input is never
// stored: each workgroup stages a TK x TN slice of it in workgroup memory straight from the input
// (zeros for padding and for the gaps of a dilated input), and a TM x TK slice of the weight, then every
// invocation accumulates a BM x BN register block and applies the fused epilogue (bias, activation, an
// optimizer update) to it. Operands are read through their views, so a permuted operand (both
// gradients) is read in place. Tiles fit the WebGPU defaults every device has (64 invocations, 4 KiB
// of workgroup memory).

import { convGeometry, type ConvKernel } from '../../../ir/conv.ts';
import { numel } from '../../../ir/shape.ts';
import { indexOf } from '../emit.ts';
import { conv } from '../spelling-wgsl.ts';
import { blockCoords, blockEpilogue, emitter, indent, store, tiledKLoop, type Args, type Body, type WgslLimits } from './common.ts';

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

export function convKernel(k: ConvKernel, args: Args, lim: WgslLimits, name: string): Body {
  const read = (arg: number, idx: string): string => conv(`${args.buf(arg)}[${idx}]`, args.storage(arg), 'float32');
  /** the epilogue with the accumulator `acc` at the output index `vars` (one name per output dim), stored */
  const epilogue = (vars: string[]): string[] => {
    const epi = emitter(args, (v, arg) => indexOf(v, vars, args.off(arg)), 'e', { name: 'acc', dtype: 'float32' });
    const result = epi.emit(k.epilogue);
    return [...epi.lines, store(args, k.output, indexOf(k.output.view, vars, args.off(k.output.arg)), result, k.epilogue.dtype)];
  };
  const a = k.attrs;
  const geo = convGeometry(k.x.view.shape, k.w.view.shape, a);
  const { n: N, groups: G, cin: Cg, cout: Og, kernel: K, outSize: O, inSize: S } = geo;
  const nd = K.length, KP = numel(K), P = numel(O), Kc = Cg * KP, cols = N * P;
  if (NT > lim.maxComputeInvocationsPerWorkgroup || 4 * TK * (TM + TN) > lim.maxComputeWorkgroupStorageSize) {
    throw new Error(`kiln: WebGPU kernel '${name}' (convolution) needs ${NT} invocations and ${4 * TK * (TM + TN)} bytes of workgroup memory; this device allows ${lim.maxComputeInvocationsPerWorkgroup} and ${lim.maxComputeWorkgroupStorageSize}`);
  }
  const workgroups: [number, number, number] = [Math.ceil(cols / TN), Math.ceil(Og / TM), G];
  if (cols === 0 || Og === 0 || G === 0) workgroups[0] = 0;
  const max = lim.maxComputeWorkgroupsPerDimension;
  if (workgroups.some((g) => g > max)) throw new Error(`kiln: WebGPU kernel '${name}' (convolution) needs a ${workgroups.join(' x ')} grid, more than this device's ${max} workgroups per dimension`);
  const xs = k.x.view.strides, ws = k.w.view.strides;
  const kv = K.map((_, d) => `kw${d}`), ov = O.map((_, d) => `p${d}`);

  // A slice: weight rows row0.., reduction positions k0..; w[g, o, c, k (reversed when flipped)].
  const wIdx = [args.off(k.w.arg), String(k.w.view.offset), ...term('g', ws[0]), ...term('gi', ws[1]), ...term('c', ws[2]),
    ...K.flatMap((kk, d) => term(a.flip ? `(${kk - 1} - ${kv[d]})` : kv[d], ws[3 + d]))].join(' + ');
  const loadA = [
    `for (var e = i32(lid); e < ${TM * TK}; e = e + ${NT}) {`,
    ...indent([
      `let r = e / ${TK}; let q = e % ${TK};`,
      `let gi = min(row0 + r, ${Og - 1}); let gk = min(k0 + q, ${Kc - 1});`,
      `let c = gk / ${KP};`,
      ...split(`(gk % ${KP})`, K, kv),
      `let v = ${read(k.w.arg, wIdx)};`,
      `tA[q * ${TM} + r] = select(0.0, v, row0 + r < ${Og} && k0 + q < ${Kc});`,
    ]),
    '}',
  ];
  // B slice: the unfolded input at reduction positions k0.. and output columns col0.. (image, position).
  const pos = S.flatMap((s, d) => {
    const q = `${ov[d]} * ${a.stride[d]} + ${kv[d]} * ${a.dilation[d]} - ${a.padLo[d]}`;
    const ld = a.lhsDilation[d];
    return ld === 1
      ? [`let y${d} = ${q};`, `let ok${d} = y${d} >= 0 && y${d} < ${s};`]
      : [`let t${d} = ${q};`, `let y${d} = t${d} / ${ld};`, `let ok${d} = t${d} >= 0 && t${d} % ${ld} == 0 && y${d} < ${s};`];
  });
  const ok = S.map((_, d) => `ok${d}`).join(' && ');
  const xIdx = [String(k.x.view.offset), ...term('b', xs[0]), ...term('g', xs[1]), ...term('c', xs[2]), ...S.flatMap((_, d) => term(`y${d}`, xs[3 + d]))].join(' + ');
  const loadB = [
    `for (var e = i32(lid); e < ${TN * TK}; e = e + ${NT}) {`,
    ...indent([
      `let q = e / ${TN}; let cc = e % ${TN};`,
      `let gj = min(col0 + cc, ${cols - 1}); let gk = min(k0 + q, ${Kc - 1});`,
      `let b = gj / ${P}; let c = gk / ${KP};`,
      ...split(`(gj % ${P})`, O, ov),
      ...split(`(gk % ${KP})`, K, kv),
      ...pos,
      `let inside = ${ok} && col0 + cc < ${cols} && k0 + q < ${Kc};`,
      `let v = ${read(k.x.arg, `${args.off(k.x.arg)} + select(0, ${xIdx}, inside)`)};`,
      `tB[q * ${TN} + cc] = select(0.0, v, inside);`,
    ]),
    '}',
  ];
  const R = Array.from({ length: BM }, (_, r) => r);
  const main = [
    `let g = i32(wid.z);`,
    ...blockCoords(WX, TM, TN, BM, BN),
    ...R.map((r) => `var c${r}_0 = vec4<f32>(0.0);`),
    ...tiledKLoop(Kc, TK, TM, TN, BM, BN, 'f32', [...loadA, ...loadB]),
    ...blockEpilogue(BM, BN, 'o', Og, cols, `min(${args.off(k.x.arg)}, 0)`, [
      `let n = j / ${P};`,
      ...split(`(j % ${P})`, O, ov),
      ...epilogue(a.outPerm.map((d) => ['n', 'g', 'o', ...ov][d])),
    ]),
  ];
  const decls = [`var<workgroup> tA: array<f32, ${TK * TM}>;`, `var<workgroup> tB: array<f32, ${TK * TN}>;`];
  return { decls, wg: [WX, WY], main, workgroups };
}
