// JavaScript codegen: one plain-loop function per kernel, sizes and strides baked in as constants.
// Each scalar op's JavaScript spelling lives in spelling-js.ts; emit.ts turns expressions into statements.

import type { DType } from '../../ir/dtype.ts';
import { convGeometry, type ConvKernel } from '../../ir/conv.ts';
import { exprChildren, exprLoads, postorder, unreachable, writtenArgs, type Expr, type Kernel, type KernelSpec } from '../../ir/kernel.ts';
import { contiguousStrides, numel } from '../../ir/shape.ts';
import { contiguousView, isContiguous, type View } from '../../ir/view.ts';
import { axisIndexedView, Emitter, collapseDims, indexOf, operandLoad } from './emit.ts';
import { JS_RANDOM, JS_SELECT, jsSpelling } from './spelling-js.ts';

/** An emitter of JS kernel expressions: loads read `b<arg>` at `index(view)`. */
function emitter(index: (view: View) => string, acc?: { name: string; dtype: DType }, counter?: string, prefix?: string): Emitter {
  return new Emitter(jsSpelling, { load: (l) => `b${l.arg}[${index(l.view)}]`, acc, counter, prefix, invariant: (l) => constantView(l.view) }, 'js codegen');
}

/** A view that reads one element whatever the loop indices (a 0-d value, or one broadcast everywhere). */
const constantView = (v: View): boolean => v.strides.every((s, d) => s === 0 || v.shape[d] === 1);

const usesRandom = (e: Expr): boolean => postorder([e], exprChildren).some((x) => x.kind === 'random');

function genMap(k: Extract<Kernel, { kind: 'map' }>, ranged: boolean): Body {
  const random = k.exprs.some(usesRandom);
  // `lin` (the row-major position in the iteration space) is what random numbers are counted by.
  const linear = contiguousView(k.shape);
  const views = [...k.exprs.flatMap((e) => exprLoads(e).map((l) => l.view)), ...k.outputs.map((o) => o.view), ...(random ? [linear] : [])];
  const uniq = [...new Set(views)];
  const { shape, strides } = collapseDims(k.shape, uniq.map((v) => v.strides));
  const vars = shape.map((_, d) => `i${d}`);
  const collapsed = new Map<View, View>(uniq.map((v, i) => [v, { shape, strides: strides[i], offset: v.offset }]));
  const em = emitter((v) => indexOf(collapsed.get(v)!, vars), undefined, 'lin');
  const values = k.exprs.map((e) => em.emit(e));
  const body = [...em.lines, ...k.outputs.map((o, j) => `b${o.arg}[${indexOf(collapsed.get(o.view)!, vars)}] = ${values[j]};`)];
  if (random) body.unshift(`const lin = ${indexOf(collapsed.get(linear)!, vars)};`);
  return loopBody([...(random ? [JS_RANDOM] : []), ...em.hoisted], shape, vars, body, ranged);
}

/**
 * A kernel's statements. A kernel whose outermost loop runs over outputs only (a map, a reduction keeping
 * some dim, a gather) can run in parts, each a range [lo, hi) of that loop writing only its own outputs
 * (the runtime's thread pool runs them, env.parallel): `extent` is that loop's trip count (0 for kernels
 * that cannot be split) and `work` the iterations of the whole nest. A `prologue` (a convolution's
 * product) is an expression computed once, before any range, that the text reads as `r`.
 */
interface Body { text: string; extent: number; work: number; prologue?: string }

/** A kernel's body: `prelude` (hoisted values), then loops over `shape` around `inner`, the outermost ranged when asked. */
function loopBody(prelude: readonly string[], shape: readonly number[], vars: readonly string[], inner: string[], ranged: boolean, work = shape.reduce((a, b) => a * b, 1)): Body {
  const extent = shape.length > 0 && shape[0] > 1 ? shape[0] : 0;
  return { text: [...prelude, ...nest(shape, vars, inner, ranged && extent > 0)].join('\n'), extent, work };
}

/** Loops over `shape`; with `ranged`, the outermost runs over [lo, hi) (a part of a split kernel, see Part). */
function nest(shape: readonly number[], vars: readonly string[], body: string[], ranged = false): string[] {
  let lines = body;
  for (let d = shape.length - 1; d >= 0; d--) {
    // A range's bounds are made int32 (`| 0`): untyped, V8 ran such loops ~1.5x slower.
    const head = ranged && d === 0 ? `let ${vars[d]} = lo | 0, end = hi | 0; ${vars[d]} < end;` : `let ${vars[d]} = 0; ${vars[d]} < ${shape[d]};`;
    lines = [`for (${head} ${vars[d]}++) {`, ...lines.map((l) => '  ' + l), '}'];
  }
  return lines;
}

/** Windows of at most this many elements (a 2 x 2 pooling window) are reduced unrolled. */
const UNROLLED_WINDOW = 9;

/**
 * The loops of a reduction over `shape`, each pass a block of `body`; a window of up to UNROLLED_WINDOW
 * elements unrolled, each copy with its indices as constants (V8 folds them): a loop of two
 * iterations costs more in branches than its body.
 */
function reductionLoops(shape: readonly number[], vars: readonly string[], body: string[]): string[] {
  const size = numel(shape), st = contiguousStrides(shape);
  if (size <= 1 || size > UNROLLED_WINDOW) return nest(shape, vars, ['{', ...body, '}']);
  return Array.from({ length: size }, (_, flat) => ['{', `  const ${vars.map((v, d) => `${v} = ${Math.floor(flat / st[d]) % shape[d]}`).join(', ')};`, ...body.map((l) => '  ' + l), '}']).flat();
}

function genReduce(k: Extract<Kernel, { kind: 'reduce' }>, ranged: boolean): Body {
  const kept = k.inShape.map((_, i) => i).filter((i) => !k.axes.includes(i) && k.inShape[i] !== 1);
  const red = k.axes.filter((i) => k.inShape[i] !== 1);
  const vars = k.inShape.map((d, i) => (d === 1 ? null : `i${i}`));
  const keptVars = k.inShape.map((_, i) => (kept.includes(i) ? `i${i}` : null));
  const inner = emitter((v) => indexOf(v, vars), undefined, undefined, 'r'); // both emitters' hoisted values share the function's scope
  const value = inner.emit(k.body);
  const outer = emitter((v) => indexOf(v, keptVars), { name: 'acc', dtype: k.epilogue.dtype });
  const result = outer.emit(k.epilogue);
  const init = k.op === 'sum' ? 'let acc = 0;' : k.op === 'max' ? 'let acc = -Infinity;' : 'let acc = 0, best = -Infinity, n = 0;';
  const update = k.op === 'sum' ? [`acc += ${value};`]
    : k.op === 'max' ? [`if (${value} > acc || ${value} !== ${value}) acc = ${value};`]
    : [`if (${value} > best || (${value} !== ${value} && best === best)) { best = ${value}; acc = n; }`, 'n++;'];
  // argmax counts positions along its single axis; `n` runs over the flattened reduced loops. The
  // loop body is a block even with no loop (only size-1 extents reduced): its names shadow none of the epilogue's.
  const redShape = red.map((d) => k.inShape[d]), redVars = red.map((d) => vars[d]!);
  const body = [init, ...reductionLoops(redShape, redVars, [...inner.lines, ...update]), ...outer.lines,
    `b${k.output.arg}[${indexOf(k.output.view, keptVars)}] = ${result};`];
  return loopBody([...inner.hoisted, ...outer.hoisted], kept.map((d) => k.inShape[d]), kept.map((d) => vars[d]!), body, ranged, k.inShape.reduce((a, b) => a * b, 1));
}

/**
 * Matmul as 4x4 register blocks: each step of k loads 4 values of a and 4 of b and updates 16
 * accumulators (strides baked in), with scalar loops for the edges. The epilogue runs per element.
 */
function genMatmul(k: Extract<Kernel, { kind: 'matmul' }>, name: string, ranged: boolean): Body {
  const a = operandLoad(k.a, 'a', name), b = operandLoad(k.b, 'b', name);
  const nb = k.batch.length;
  const bv = k.batch.map((_, i) => `i${i}`);
  const [sam, sak] = a.view.strides.slice(nb), [sbk, sbn] = b.view.strides.slice(nb);
  const baseA = indexOf({ ...a.view, shape: k.batch, strides: a.view.strides.slice(0, nb) }, bv);
  const baseB = indexOf({ ...b.view, shape: k.batch, strides: b.view.strides.slice(0, nb) }, bv);
  const epi = emitter((v) => indexOf(v, [...bv, 'ii', 'jj']), { name: 'acc', dtype: k.epilogue.dtype });
  const result = epi.emit(k.epilogue);
  const storeLines = [...epi.lines, `b${k.output.arg}[${indexOf(k.output.view, [...bv, 'ii', 'jj'])}] = ${result};`].join(' ');
  const store = (acc: string, di: number | string, dj: number | string): string =>
    `{ const ii = i + ${di}, jj = j + ${dj}, acc = ${acc}; ${storeLines} }`;
  const A = `b${a.arg}`, B = `b${b.arg}`;
  const mul = (s: number, v: string): string => (s === 0 ? '0' : s === 1 ? v : `${v} * ${s}`);
  const R = [0, 1, 2, 3];
  const block = [
    `const pa = ${baseA} + ${mul(sam, 'i')}, pb = ${baseB} + ${mul(sbn, 'j')};`,
    `let ${R.flatMap((r) => R.map((c) => `c${r}${c} = 0`)).join(', ')};`,
    `for (let kk = 0; kk < ${k.k}; kk++) {`,
    `  const qa = pa + ${mul(sak, 'kk')}, qb = pb + ${mul(sbk, 'kk')};`,
    `  const ${R.map((r) => `a${r} = ${A}[qa + ${r * sam}]`).join(', ')};`,
    `  const ${R.map((c) => `v${c} = ${B}[qb + ${c * sbn}]`).join(', ')};`,
    ...R.map((r) => `  ${R.map((c) => `c${r}${c} += a${r} * v${c};`).join(' ')}`),
    '}',
    ...R.flatMap((r) => R.map((c) => store(`c${r}${c}`, r, c))),
  ];
  const single = (rows: string, cols: string): string[] => [
    `for (let i = ${rows}; i < ${k.m}; i++) for (let j = ${cols}; j < ${k.n}; j++) {`,
    `  const pa = ${baseA} + ${mul(sam, 'i')}, pb = ${baseB} + ${mul(sbn, 'j')};`,
    `  let s = 0;`,
    `  for (let kk = 0; kk < ${k.k}; kk++) s += ${A}[pa + ${mul(sak, 'kk')}] * ${B}[pb + ${mul(sbk, 'kk')}];`,
    `  ${store('s', 0, 0)}`,
    '}',
  ];
  if (kernelEnv.gemm && a.dtype === 'float32' && b.dtype === 'float32' && k.m * k.n * k.k >= GEMM_MIN_WORK) {
    // Big float products go to the runtime's WebAssembly SIMD gemm (env.gemm); the epilogue stays here.
    // Whether the product is split over threads is decided here, once, from its shape. (Without a gemm --
    // no WebAssembly SIMD -- the blocked loops below run instead; emitting only one keeps kernels small.)
    const call = `env.gemm(${A}, ${baseA}, ${sam}, ${sak}, ${B}, ${baseB}, ${sbk}, ${sbn}, ${k.m}, ${k.n}, ${k.k}, ${gemmSplitPays(k.m, k.n, k.k)})`;
    // An unbatched product whose epilogue computes (not a plain copy) can run its epilogue in ranges of
    // rows: the product is the prologue, its rows `r` (m x ldc, in the gemm's shared memory).
    const rows = nb === 0 && !plainCopy(k) ? { extent: k.m, work: k.m * k.n } : { extent: 0, work: 0 };
    if (ranged && rows.extent) {
      return { ...rows, prologue: `${call}.c`, text: [...epi.hoisted, `const ldc = r.length / ${k.m};`,
        `for (let i = lo | 0, end = hi | 0; i < end; i++) for (let j = 0; j < ${k.n}; j++) ${store('r[i * ldc + j]', 0, 0)}`].join('\n') };
    }
    return { ...rows, text: [...epi.hoisted, ...nest(k.batch, bv, [
      `const prod = ${call};`,
      'const cc = prod.c, ldc = prod.ldc;',
      `if (ldc === ${k.n}) {`,
      ...flatEpilogue(k, bv).map((l) => '  ' + l),
      '} else {',
      `  for (let i = 0; i < ${k.m}; i++) for (let j = 0; j < ${k.n}; j++) ${store('cc[i * ldc + j]', 0, 0)}`,
      '}',
    ])].join('\n') };
  }
  return { text: [...epi.hoisted, ...nest(k.batch, bv, blocked())].join('\n'), extent: 0, work: 0 };

  function blocked(): string[] {
  const m4 = k.m - (k.m % 4), n4 = k.n - (k.n % 4);
  return [
    `for (let i = 0; i < ${m4}; i += 4) {`,
    `  for (let j = 0; j < ${n4}; j += 4) {`,
    ...block.map((l) => '    ' + l),
    '  }',
    '}',
    // Right edge (columns past the last full block) for the blocked rows, then the bottom rows.
    ...(n4 < k.n ? single('0', String(n4)).map((l) => l.replace(`i < ${k.m}`, `i < ${m4}`)) : []),
    ...(m4 < k.m ? single(String(m4), '0') : []),
  ];
  }
}

/** Products with fewer multiply-adds than this stay in JavaScript (packing would cost more than it saves). */
const GEMM_MIN_WORK = 1 << 15;

/**
 * A loop over `shape` in row-major order as one counter `t`: V8 runs one long loop 1.5-1.8x faster
 * than nests of short ones (measured on the MLP's update epilogues). `body` gets `at(strides)`, the
 * index term of a view with these strides over `shape`: `t` for a view that walks it contiguously,
 * else a sum over counters i<d>, which are kept (with a carry chain from the last dim) only for the
 * dims some view needs. With `ranged`, `t` runs over [lo, hi) (a part of a split kernel), the counters
 * starting where `lo` is.
 */
function flatLoop(shape: readonly number[], body: (at: (strides: readonly number[]) => string) => string[], ranged = false): string[] {
  const contiguous = contiguousStrides(shape);
  let outer = shape.length; // the outermost dim whose counter a view reads
  const at = (strides: readonly number[]): string => {
    if (strides.every((st, d) => st === contiguous[d] || shape[d] === 1)) return 't';
    const terms = strides.flatMap((st, d) => {
      if (st === 0 || shape[d] === 1) return [];
      outer = Math.min(outer, d);
      return [st === 1 ? `i${d}` : `i${d} * ${st}`];
    });
    return terms.length ? terms.join(' + ') : '0';
  };
  const lines = body(at);
  const counted = shape.map((_, d) => d).filter((d) => d >= outer && shape[d] !== 1);
  let carry = '';
  for (const d of counted) carry = `if (++i${d} === ${shape[d]}) { i${d} = 0;${carry ? ` ${carry}` : ''} }`;
  const start = (d: number): string => (ranged ? `((t / ${contiguous[d]}) | 0) % ${shape[d]}` : '0');
  const [from, to] = ranged ? ['lo | 0', 'end'] : ['0', String(shape.reduce((a, b) => a * b, 1))];
  return [
    `for (let t = ${from}${ranged ? ', end = hi | 0' : ''}${counted.map((d) => `, i${d} = ${start(d)}`).join('')}; t < ${to}; t++) {`,
    ...lines.map((l) => '  ' + l),
    ...(carry ? ['  ' + carry] : []),
    '}',
  ];
}

/** Whether a product's epilogue is a plain copy into rows laid out as its result's (one native copy). */
function plainCopy(k: Extract<Kernel, { kind: 'matmul' }>): boolean {
  const [om, on] = k.output.view.strides.slice(k.batch.length);
  return k.epilogue.kind === 'acc' && k.output.dtype === 'float32' && on === 1 && (om === k.n || k.m === 1);
}

/** A gemm's epilogue over its result when the rows are packed (ldc = n): one flat loop over [m, n]. */
function flatEpilogue(k: Extract<Kernel, { kind: 'matmul' }>, bv: readonly string[]): string[] {
  const nb = k.batch.length;
  const out = k.output.view;
  if (plainCopy(k)) {
    // a plain product into rows laid out as the result's: one native copy
    const at = indexOf({ shape: k.batch, strides: out.strides.slice(0, nb), offset: out.offset }, bv);
    return [`b${k.output.arg}.set(cc.subarray(0, ${k.m * k.n}), ${at});`];
  }
  let epi: Emitter | undefined;
  const loop = flatLoop([k.m, k.n], (at) => {
    const index = (v: View): string => {
      const batch = indexOf({ shape: k.batch, strides: v.strides.slice(0, nb), offset: v.offset }, bv);
      const inner = at(v.strides.slice(nb));
      return batch === '0' ? inner : inner === '0' ? batch : `${batch} + ${inner}`;
    };
    epi = emitter(index, { name: 'acc', dtype: k.epilogue.dtype });
    const result = epi.emit(k.epilogue);
    return ['const acc = cc[t];', ...epi.lines, `b${k.output.arg}[${index(k.output.view)}] = ${result};`];
  });
  return [...epi!.hoisted, ...loop];
}

/**
 * Whether an m x k by k x n product is worth splitting over the CPU's threads: below ~2M multiply-adds
 * (~0.1 ms on one core) waking the workers (10-50 µs) and sharing caches costs more than it saves.
 */
export function gemmSplitPays(m: number, n: number, k: number): boolean {
  return m * n * k >= 1 << 21;
}

function genGather(k: Extract<Kernel, { kind: 'gather' }>, ranged: boolean): Body {
  const vars = k.shape.map((_, i) => `i${i}`);
  const em = emitter((v) => indexOf(v, vars));
  const idx = em.emit(k.index);
  const srcVars = vars.map((v, i) => (i === k.axis ? 'g' : v));
  const body = [...em.lines, `const g = ${idx};`,
    `b${k.output.arg}[${indexOf(k.output.view, vars)}] = b${k.src.arg}[${indexOf(axisIndexedView(k.src.view, k.shape, k.axis), srcVars)}];`];
  return loopBody(em.hoisted, k.shape, vars, body, ranged);
}

/**
 * out = zeros, then out[i with i[axis] = index(i)] += src(i). Scattering along any dim but the first keeps
 * each source row's writes in its own output row: with a contiguous output it can run in ranges of rows
 * (each range zeroing its own rows first).
 */
function genScatterAdd(k: Extract<Kernel, { kind: 'scatterAdd' }>, ranged: boolean): Body {
  const vars = k.srcShape.map((_, i) => `i${i}`);
  const em = emitter((v) => indexOf(v, vars));
  const idx = em.emit(k.index), src = em.emit(k.src);
  const outVars = vars.map((v, i) => (i === k.axis ? 'g' : v));
  const o = k.output;
  const body = [...em.lines, `const g = ${idx};`, `b${o.arg}[${indexOf(axisIndexedView(o.view, k.srcShape, k.axis), outVars)}] += ${src};`];
  const byRows = k.axis !== 0 && isContiguous(o.view) && k.srcShape.length > 1;
  const row = o.view.shape.slice(1).reduce((a, b) => a * b, 1), off = o.view.offset;
  const fill = ranged && byRows ? `b${o.arg}.fill(0, ${off} + lo * ${row}, ${off} + hi * ${row});` : `b${o.arg}.fill(0);`;
  const loops = loopBody(em.hoisted, k.srcShape, vars, body, ranged && byRows);
  return { ...loops, text: `${fill}\n${loops.text}`, ...(byRows ? {} : { extent: 0, work: 0 }) };
}

/**
 * Convolution: the runtime's `env.conv` (runtime/conv-cpu.ts: im2col blocks through the WebAssembly
 * gemm) computes the natural layout [N, G, Og, ...O] into a scratch `r` (the body's prologue, run once
 * before the loop); the epilogue runs per element while copying it out, in ranges when split.
 */
function genConv(k: ConvKernel, ranged: boolean): Body {
  const geo = convGeometry(k.x.view.shape, k.w.view.shape, k.attrs);
  const shape = [geo.n, geo.groups, geo.cout, ...geo.outSize];
  // A view's dim i is the natural dim outPerm[i]: its strides over the natural loop, for flatLoop.
  const natural = (v: View): number[] => { const st = shape.map(() => 0); k.attrs.outPerm.forEach((d, i) => (st[d] = v.strides[i])); return st; };
  const fused = gemmEpilogue(k, shape, natural);
  let epi: Emitter | undefined;
  const loop = flatLoop(shape, (at) => {
    const index = (v: View): string => (v.offset ? `${v.offset} + ${at(natural(v))}` : at(natural(v)));
    epi = emitter(index, { name: 'acc', dtype: 'float32' });
    const result = epi.emit(k.epilogue);
    return ['const acc = r[t];', ...epi.lines, `b${k.output.arg}[${index(k.output.view)}] = ${result};`];
  }, ranged);
  const view = (v: View): string => JSON.stringify({ shape: v.shape, strides: v.strides, offset: v.offset });
  const total = shape.reduce((a, b) => a * b, 1);
  // With an epilogue the runtime can apply itself, `r` is null when it did (and wrote the output).
  const runtimeEpilogue = fused ? `, { out: b${k.output.arg}, at: ${k.output.view.offset}, bias: ${fused.bias ? `b${fused.bias.arg}` : 'null'}, biasAt: ${fused.bias?.view.offset ?? 0}, relu: ${fused.relu} }` : '';
  return { text: [...(fused ? ['if (r === null) return;'] : []), ...epi!.hoisted, ...loop].join('\n'), extent: total, work: total,
    prologue: `env.conv(${JSON.stringify(k.attrs)}, b${k.x.arg}, ${view(k.x.view)}, b${k.w.arg}, ${view(k.w.view)}${runtimeEpilogue})` };
}

/**
 * A convolution's epilogue that the runtime's gemm can apply as it writes the output (runtime/conv-cpu.ts
 * ConvEpilogue): acc, plus a float32 bias along output channels, then maybe ReLU -- a Conv2d's bias and
 * the ReLU after it -- into a float32 output in the natural layout. Null for any other epilogue.
 */
function gemmEpilogue(k: ConvKernel, shape: readonly number[], natural: (v: View) => number[]): { bias: Extract<Expr, { kind: 'load' }> | null; relu: boolean } | null {
  const laid = (v: View, want: readonly number[]): boolean => natural(v).every((s, d) => s === want[d] || shape[d] === 1);
  if (k.output.dtype !== 'float32' || !laid(k.output.view, contiguousStrides(shape))) return null;
  let e = k.epilogue, relu = false;
  if (e.kind === 'unary' && e.op === 'relu') [e, relu] = [e.x, true];
  if (e.kind === 'acc') return { bias: null, relu };
  if (e.kind !== 'binary' || e.op !== 'add') return null;
  const bias = e.a.kind === 'acc' ? e.b : e.b.kind === 'acc' ? e.a : null;
  // [N, G, Og, ...O]: the bias walks the channels (g * Og + o)
  const along = shape.map((_, d) => (d === 1 ? shape[2] : +(d === 2)));
  return bias?.kind === 'load' && bias.dtype === 'float32' && laid(bias.view, along) ? { bias, relu } : null;
}

function jsBody(spec: KernelSpec, ranged = false): Body {
  const k = spec.kernel;
  switch (k.kind) {
    case 'map': return genMap(k, ranged);
    case 'reduce': return genReduce(k, ranged);
    case 'matmul': return genMatmul(k, spec.name, ranged);
    case 'gather': return genGather(k, ranged);
    case 'scatterAdd': return genScatterAdd(k, ranged);
    case 'conv': return genConv(k, ranged);
    default: return unreachable(k, 'kernel');
  }
}

const indent = (text: string, by = '  '): string => text.split('\n').map((l) => by + l).join('\n');

export function jsSource(spec: KernelSpec): string {
  const args = spec.args.map((_, i) => `b${i}`).join(', ');
  const body = jsBody(spec);
  return `function ${spec.name}(${args}${args ? ', ' : ''}p) {\n${indent((body.prologue ? `const r = ${body.prologue};\n` : '') + body.text)}\n}`;
}

/** Kernels with fewer iterations than this run whole on the calling thread: waking the pool (10-50 µs) would cost more than half of them saves. */
const PART_MIN_WORK = 1 << 17;

/**
 * A whole list of kernels run in order (a compiled step on the CPU): one function per kernel, whose
 * `b0, b1, ...` name entries of the buffer table `B`, and `program` calling them in turn. One function per
 * kernel (not one function for the step) keeps each small enough for V8's optimizing compiler, which
 * gives up on functions with too much bytecode (a 2-layer transformer step as one function ran 2.7x
 * slower than eagerly); the calls cost nanoseconds. A big kernel that can run in parts (Body) is called
 * through `env.parallel` (the thread pool), which runs ranges of its outermost loop here and on the workers.
 */
export function jsProgramSource(specs: readonly KernelSpec[], bindings: readonly (readonly number[])[], parallel: JsParallel | null = null): string {
  // a prologue's result goes into the table past the planned slots (where a split kernel's ranges find it)
  let scratch = Math.max(-1, ...bindings.flat()) + 1;
  const calls: string[] = [];
  const fns = specs.map((spec, i) => {
    // Only a kernel that will be split gets ranged loops: a loop bound that is not a constant costs V8 ~5-10%.
    const whole = jsBody(spec), split = parallel !== null && whole.extent > 1 && whole.work >= PART_MIN_WORK;
    const body = split ? jsBody(spec, true) : whole, slots = [...bindings[i]];
    const names = slots.map((slot, a) => `b${a} = B[${slot}]`);
    let prologue = '';
    if (body.prologue) {
      const r = scratch++;
      prologue = `function k${i}r(B) {\n${indent(`const ${names.join(', ')};\nB[${r}] = ${body.prologue};`)}\n}\n`;
      calls.push(`  k${i}r(B);`);
      names.push(`r = B[${r}]`);
      slots.push(r);
    }
    const fn = `function k${i}(B, p, lo, hi) {\n${indent((names.length ? `const ${names.join(', ')};\n` : '') + body.text)}\n}`;
    const id = split ? parallel.kernel(`"use strict";\n${JS_SELECT}\nreturn (${fn});`, slots, writtenArgs(spec.kernel).map((a) => bindings[i][a])) : -1;
    calls.push(id < 0 ? `  k${i}(B, p);` : `  env.parallel.run(${id}, B, p, ${body.extent}, k${i});`);
    return `// ${spec.name}\n${prologue}${fn}`;
  });
  return [...fns, `return function program(B, p) {\n${calls.join('\n')}\n};`].join('\n');
}

export function compileJsProgram(specs: readonly KernelSpec[], bindings: readonly (readonly number[])[]): (buffers: unknown[]) => void {
  const fn = new Function('env', `"use strict";\n${JS_SELECT}\n${jsProgramSource(specs, bindings, kernelEnv.parallel)}`)(kernelEnv) as (B: unknown[], p: number[]) => void;
  const noParams: number[] = [];
  return (buffers) => fn(buffers, noParams);
}

export type JsKernelFn = (...args: unknown[]) => void;

/**
 * The thread pool as split kernels use it. `kernel(module, slots, written)` keeps a kernel where the workers
 * can compile it -- a module returning its function of (B, p, lo, hi), B the buffer table, of which it
 * reads `slots` and writes `written` -- and gives its id. `run(id, B, p, extent, fn)` runs it in ranges
 * [lo, hi) of [0, extent): `fn` (the same function, compiled here) on this thread, the module on the
 * workers, or all of it here when they cannot take it (no workers, or a buffer they cannot share).
 * Ranges write disjoint outputs in the same order as one call would: the result is the same bits.
 */
export interface JsParallel {
  kernel(module: string, slots: readonly number[], written: readonly number[]): number;
  run(id: number, table: readonly unknown[], params: readonly number[], extent: number, fn: SplitFn): void;
}

/** A split kernel: its buffer table, params, and the range [lo, hi) of its outermost loop to run. */
export type SplitFn = (table: readonly unknown[], params: readonly number[], lo: number, hi: number) => void;

/**
 * Helpers generated kernels may call (`env.gemm`, null where the engine lacks WebAssembly SIMD; `env.conv`,
 * runtime/conv-cpu.ts; `env.parallel`, null without a thread pool); the CPU runtime provides them before
 * any kernel is generated.
 */
export interface JsKernelEnv { gemm: unknown; conv: unknown; parallel: JsParallel | null }
let kernelEnv: JsKernelEnv = { gemm: null, conv: null, parallel: null };
export function setJsKernelEnv(env: JsKernelEnv): void { kernelEnv = env; }

export function compileJs(spec: KernelSpec): JsKernelFn {
  const src = jsSource(spec);
  return new Function('env', `"use strict"; ${JS_SELECT} return (${src});`)(kernelEnv) as JsKernelFn;
}
