// The WGSL reduce strategy: a serial loop per output element (float sums in 64-element partial sums), or
// one workgroup per output element with a tree in workgroup memory (sum / NaN-propagating max /
// first-position argmax); the epilogue runs on the reduced value.

import type { DType } from '../../../ir/dtype.ts';
import type { Kernel } from '../../../ir/kernel.ts';
import { indexOf } from '../emit.ts';
import { conv, wtype } from '../spelling-wgsl.ts';
import { decompose, emitter, grid1d, indent, perElement, store, type Args, type Body, type WgslLimits } from './common.ts';

export function reduceKernel(k: Extract<Kernel, { kind: 'reduce' }>, args: Args, lim: WgslLimits, name: string, cap: number, strategy: 'auto' | 'serial' | 'tree', treeMaxOutputs: number): Body {
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
  const tree = strategy === 'tree' ? wg >= 2 : strategy === 'serial' ? false : R > 64 && nOut < treeMaxOutputs && wg >= 16;

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
