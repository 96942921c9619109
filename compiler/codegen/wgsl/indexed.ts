// The WGSL gather and scatterAdd strategies: one invocation per output element; scatterAdd loops over the
// source positions that can land on its element, in order (deterministic, no atomics).

import type { DType } from '../../../ir/dtype.ts';
import type { Kernel } from '../../../ir/kernel.ts';
import { axisIndexedView, indexOf } from '../emit.ts';
import { conv, wtype } from '../spelling-wgsl.ts';
import { decompose, emitter, indent, perElement, store, type Args, type Body, type WgslLimits } from './common.ts';

export function gatherKernel(k: Extract<Kernel, { kind: 'gather' }>, args: Args, lim: WgslLimits, name: string, cap: number): Body {
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

export function scatterAddKernel(k: Extract<Kernel, { kind: 'scatterAdd' }>, args: Args, lim: WgslLimits, name: string, cap: number): Body {
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
