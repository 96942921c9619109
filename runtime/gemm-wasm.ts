// A float32 matrix product in WebAssembly SIMD for the CPU device: C = A @ B. Operands are packed
// (A in blocks of RB rows interleaved over k, B in panels of 4*CB columns, both per block of KC values
// of k) so that the micro-kernel (4 x 8 accumulators) reads both with constant offsets from two pointers. The module is
// encoded here (no toolchain); where WebAssembly SIMD is missing, `gemm` is null and generated
// JavaScript loops run. Big products are split over the thread pool (pool.ts) by column panels or
// row blocks; every thread runs the same micro-kernel over the same shared memory.

import { gemmSplitPays } from '../compiler/codegen/js.ts';
import { MAX_PAGES, packedFloats, pool, runPart, type GemmFns, type GemmJob, type Pool } from './pool.ts';
import { convolveUnfolded } from './conv-gemm.ts';
import type { ConvEpilogue } from './conv-cpu.ts';
import type { ConvAttrs, ConvGeometry } from '../ir/conv.ts';
import type { View } from '../ir/view.ts';

const I32 = 0x7f, V128 = 0x7b;
const op = {
  block: 0x02, loop: 0x03, if: 0x04, else: 0x05, br: 0x0c, brIf: 0x0d, end: 0x0b,
  get: 0x20, set: 0x21, tee: 0x22,
  i32Const: 0x41, i32Add: 0x6a, i32Sub: 0x6b, i32Mul: 0x6c, i32DivU: 0x6e, i32And: 0x71, i32Or: 0x72, i32LtU: 0x49, i32LeU: 0x4d, i32Eq: 0x46, i32Eqz: 0x45,
  i32Load: 0x28, f32Load: 0x2a, f32Store: 0x38, f32Const: 0x43, f32: 0x7d, f32Add: 0x92, i32GeU: 0x4f,
  simd: 0xfd,
} as const;
// SIMD opcodes after 0xfd (LEB128): v128.load 0, v128.load32_splat 9, v128.store 11, v128.const 12,
// f32x4.add 228, f32x4.mul 230, f32x4.pmax 235 (pmax(a, b) = a < b ? b : a); relaxed SIMD: f32x4.relaxed_madd 261
// (a * b + c, fused where the CPU can).
const simd = { load: [0x00], shuffle: [0x0d], splat32: [0x09], store: [0x0b], const: [0x0c], add: [0xe4, 0x01], mul: [0xe6, 0x01], pmax: [0xeb, 0x01], madd: [0x85, 0x02] } as const;

function uleb(n: number): number[] {
  const out: number[] = [];
  do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; out.push(b); } while (n);
  return out;
}
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f; n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
}
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const str = (s: string): number[] => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))];

/** A function body's code and its emitters: raw bytes, local.get / local.set, an i32 constant, local += v. */
type Emitter = ReturnType<typeof emitter>;
function emitter() {
  const code: number[] = [];
  const e = (...xs: number[]) => { code.push(...xs); };
  const get = (l: number) => e(op.get, l), set = (l: number) => e(op.set, l);
  const i32 = (v: number) => e(op.i32Const, ...sleb(v));
  const add = (l: number, v: number) => { get(l); i32(v); e(op.i32Add); set(l); };
  return { code, e, get, set, i32, add };
}

/** A micro-kernel's shape: RB rows x 4*CB columns of accumulators; relaxed uses f32x4.relaxed_madd. */
export interface KernelShape { RB: number; CB: number; relaxed: boolean }

/**
 * The module: imports memory `env.mem` (shared when `shared`) and exports
 * `kernel(pa, pb, pc, mBlocks, nPanels, kc, ldcBytes, accumulate)` over packed operands (byte pointers):
 * for every panel of B (outer: it stays in the first-level cache) and every row block of A,
 * C[block, panel] (+)= A_block @ B_panel over kc values of k.
 */
export function gemmModule({ RB, CB, relaxed }: KernelShape, shared: boolean): Uint8Array<ArrayBuffer> {
  const [PA, PB, PC, MB, NP, KC, LDC, ACCUM] = [0, 1, 2, 3, 4, 5, 6, 7];
  const p = 8, ib = 9, pbp = 10, q = 11, r = 12, end = 13, pcb = 14, aStride = 15, bStride = 16;
  const nI32 = 9;
  const v0 = 8 + nI32;
  const acc = (i: number, c: number) => v0 + i * CB + c;
  const bv = (c: number) => v0 + RB * CB + c, av = v0 + RB * CB + CB;
  const NR = 4 * CB;
  const rows = Array.from({ length: RB }, (_, i) => i), cols = Array.from({ length: CB }, (_, c) => c);
  const { code, e, get, set, i32 } = emitter();
  const memarg = (offset: number, align: number) => [align, ...uleb(offset)];
  // aStride = kc * RB * 4 (one packed row block), bStride = kc * NR * 4 (one packed panel)
  get(KC); i32(RB * 4); e(op.i32Mul); set(aStride);
  get(KC); i32(NR * 4); e(op.i32Mul); set(bStride);
  i32(0); set(p); get(PB); set(pbp);
  e(op.block, 0x40, op.loop, 0x40);
  get(p); get(NP); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
  i32(0); set(ib);
  e(op.block, 0x40, op.loop, 0x40);
  get(ib); get(MB); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
  // pcb = PC + ib * RB * ldc + p * NR * 4
  get(PC); get(ib); i32(RB); e(op.i32Mul); get(LDC); e(op.i32Mul, op.i32Add); get(p); i32(NR * 4); e(op.i32Mul, op.i32Add); set(pcb);
  const rowAddress = (i: number) => { get(pcb); if (i) { get(LDC); i32(i); e(op.i32Mul, op.i32Add); } };
  get(ACCUM); e(op.if, 0x40);
  for (const i of rows) for (const c of cols) { rowAddress(i); e(op.simd, ...simd.load, ...memarg(16 * c, 4)); set(acc(i, c)); }
  e(op.else);
  for (const i of rows) for (const c of cols) { e(op.simd, ...simd.const, ...new Array(16).fill(0)); set(acc(i, c)); }
  e(op.end);
  // q walks the packed row block (RB floats per k), r the panel (NR floats per k); kc >= 1.
  get(PA); get(ib); get(aStride); e(op.i32Mul, op.i32Add); e(op.tee, q); get(aStride); e(op.i32Add); set(end);
  get(pbp); set(r);
  e(op.loop, 0x40);
  for (const c of cols) { get(r); e(op.simd, ...simd.load, ...memarg(16 * c, 4)); set(bv(c)); }
  for (const i of rows) {
    get(q); e(op.simd, ...simd.splat32, ...memarg(4 * i, 2)); set(av);
    for (const c of cols) {
      if (relaxed) { get(av); get(bv(c)); get(acc(i, c)); e(op.simd, ...simd.madd); }
      else { get(acc(i, c)); get(av); get(bv(c)); e(op.simd, ...simd.mul, op.simd, ...simd.add); }
      set(acc(i, c));
    }
  }
  get(r); i32(NR * 4); e(op.i32Add); set(r);
  get(q); i32(RB * 4); e(op.i32Add); e(op.tee, q); get(end); e(op.i32LtU, op.brIf, 0);
  e(op.end);
  for (const i of rows) for (const c of cols) { rowAddress(i); get(acc(i, c)); e(op.simd, ...simd.store, ...memarg(16 * c, 4)); }
  get(ib); i32(1); e(op.i32Add); set(ib);
  e(op.br, 0, op.end, op.end);
  get(pbp); get(bStride); e(op.i32Add); set(pbp);
  get(p); i32(1); e(op.i32Add); set(p);
  e(op.br, 0, op.end, op.end);
  e(op.end);
  const locals = vec([[...uleb(nI32), I32], [...uleb(RB * CB + CB + 1), V128]]);
  const body = [...locals, ...code];
  const limits = shared ? [0x03, ...uleb(1), ...uleb(MAX_PAGES)] : [0x00, ...uleb(1)];
  const functions = [body, packBody(RB), packBody(NR), unfoldBody(NR), addRowsBody(), unfoldRowsBody(NR), dotBody(relaxed), biasReluBody()].map((b) => [...uleb(b.length), ...b]);
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec(new Array(8).fill([I32])), 0x00], [0x60, ...vec(new Array(9).fill([I32])), 0x00], [0x60, ...vec(new Array(UNFOLD_PARAMS).fill([I32])), 0x00],
      [0x60, ...vec(new Array(6).fill([I32])), 0x00], [0x60, ...vec(new Array(DOT_PARAMS).fill([I32])), 0x00]])),
    ...section(2, vec([[...str('env'), ...str('mem'), 0x02, ...limits]])),
    ...section(3, vec([[0x00], [0x01], [0x01], [0x02], [0x03], [0x02], [0x04], [0x03]])),
    ...section(7, vec([[...str('kernel'), 0x00, 0x00], [...str('packA'), 0x00, 0x01], [...str('packB'), 0x00, 0x02], [...str('packUnfolded'), 0x00, 0x03], [...str('addRows'), 0x00, 0x04],
      [...str('packUnfoldedRows'), 0x00, 0x05], [...str('dot'), 0x00, 0x06], [...str('biasRelu'), 0x00, 0x07]])),
    ...section(10, vec(functions)),
  ]);
}

/**
 * The body of a packer for blocks of W elements (pool.ts PackFn): per block, W source pointers walk
 * k together and each k-step stores W floats contiguously; a block that runs past `count` (the last
 * one) stores zeros for the missing elements.
 */
function packBody(W: number): number[] {
  const [DST, DBS, SRC, SE, SK, COUNT, B0, B1, KB] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const b = 9, d = 10, kk = 11, seB = 12, skB = 13, src = (e: number) => 14 + e;
  const { code, e, get, set, i32 } = emitter();
  const elems = Array.from({ length: W }, (_, i) => i);
  get(SE); i32(4); e(op.i32Mul); set(seB);
  get(SK); i32(4); e(op.i32Mul); set(skB);
  get(B0); set(b);
  e(op.block, 0x40, op.loop, 0x40);
  get(b); get(B1); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
  get(DST); get(b); get(DBS); e(op.i32Mul, op.i32Add); set(d);
  // src(e) = SRC + (b * W + e) * sElem * 4
  get(SRC); get(b); i32(W); e(op.i32Mul); get(seB); e(op.i32Mul, op.i32Add); set(src(0));
  for (const i of elems.slice(1)) { get(src(i - 1)); get(seB); e(op.i32Add); set(src(i)); }
  const kLoop = (value: (i: number) => void) => {
    i32(0); set(kk);
    e(op.block, 0x40, op.loop, 0x40);
    get(kk); get(KB); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
    for (const i of elems) { get(d); value(i); e(op.f32Store, 2, ...uleb(4 * i)); }
    for (const i of elems) { get(src(i)); get(skB); e(op.i32Add); set(src(i)); }
    get(d); i32(4 * W); e(op.i32Add); set(d);
    get(kk); i32(1); e(op.i32Add); set(kk);
    e(op.br, 0, op.end, op.end);
  };
  // a whole block: (b + 1) * W <= count; its elements adjacent in memory (sElem = 1, e.g. B's rows of a
  // row-major B): W / 4 vector copies per k-step, else one scalar copy per element
  get(b); i32(1); e(op.i32Add); i32(W); e(op.i32Mul); get(COUNT); e(op.i32LeU);
  e(op.if, 0x40);
  get(SE); i32(1); e(op.i32Eq);
  e(op.if, 0x40);
  i32(0); set(kk);
  e(op.block, 0x40, op.loop, 0x40);
  get(kk); get(KB); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
  for (let v = 0; v < W / 4; v++) { get(d); get(src(0)); e(op.simd, ...simd.load, 0, ...uleb(16 * v)); e(op.simd, ...simd.store, 0, ...uleb(16 * v)); }
  get(src(0)); get(skB); e(op.i32Add); set(src(0));
  get(d); i32(4 * W); e(op.i32Add); set(d);
  get(kk); i32(1); e(op.i32Add); set(kk);
  e(op.br, 0, op.end, op.end);
  e(op.else);
  kLoop((i) => { get(src(i)); e(op.f32Load, 2, 0); });
  e(op.end);
  e(op.else);
  kLoop((i) => {
    get(b); i32(W); e(op.i32Mul); i32(i); e(op.i32Add); get(COUNT); e(op.i32LtU);
    e(op.if, op.f32); get(src(i)); e(op.f32Load, 2, 0); e(op.else, op.f32Const, 0, 0, 0, 0, op.end);
  });
  e(op.end);
  get(b); i32(1); e(op.i32Add); set(b);
  e(op.br, 0, op.end, op.end);
  e(op.end);
  return [...vec([[...uleb(5 + W), I32]]), ...code];
}

/** Parameters of the unfolding packer (pool.ts UnfoldFn). */
const UNFOLD_PARAMS = 24;

/** An unfolding packer's loop over panels b of B0..B1 (P = OH * OW output positions per image), d at panel b's packed block. */
function panelLoop({ e, get, set }: Emitter, l: { OH: number; OW: number; P: number; B0: number; B1: number; b: number; DST: number; DBS: number; d: number }): void {
  get(l.OH); get(l.OW); e(op.i32Mul); set(l.P);
  get(l.B0); set(l.b);
  e(op.block, 0x40, op.loop, 0x40);
  get(l.b); get(l.B1); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
  get(l.DST); get(l.b); get(l.DBS); e(op.i32Mul, op.i32Add); set(l.d);
}

/** From k-step K0 (channel c, window row ki, column kj), the loop over an unfolding's kk < KB k-steps. */
function kStepLoop({ e, get, set, i32 }: Emitter, l: { K0: number; KH: number; KW: number; KB: number; c: number; ki: number; kj: number; kk: number; rem: number }): void {
  get(l.K0); get(l.KH); get(l.KW); e(op.i32Mul); e(op.i32DivU); set(l.c);
  get(l.K0); get(l.c); get(l.KH); get(l.KW); e(op.i32Mul, op.i32Mul, op.i32Sub); set(l.rem);
  get(l.rem); get(l.KW); e(op.i32DivU); set(l.ki);
  get(l.rem); get(l.ki); get(l.KW); e(op.i32Mul, op.i32Sub); set(l.kj);
  i32(0); set(l.kk);
  e(op.block, 0x40, op.loop, 0x40);
  get(l.kk); get(l.KB); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
}

/** Column j of B as (image bi, output row y; rem = its position in the image, so its output column is rem - y * OW). */
function decodeColumn({ e, get, set }: Emitter, l: { j: number; P: number; OW: number; bi: number; rem: number; y: number }): void {
  get(l.j); get(l.P); e(op.i32DivU); set(l.bi);
  get(l.j); get(l.bi); get(l.P); e(op.i32Mul, op.i32Sub); set(l.rem);
  get(l.rem); get(l.OW); e(op.i32DivU); set(l.y);
}

/**
 * The body of the unfolding packer (pool.ts UnfoldFn): B of a convolution as im2col would write it,
 * packed straight from the input. Per panel, each of its W columns (image, output row y, column x)
 * gets a base pointer and the input row/column its window starts at; per k-step (channel, window row
 * i, column j) one offset is added to every base, and a column whose input position falls outside the
 * input (padding, or past the last column) stores a zero.
 */
function unfoldBody(W: number): number[] {
  const [DST, DBS, B0, B1, KB, K0, N, SRC, SN, SC, SH, SW, KH, KW, OH, OW, H, WI, STH, STW, DLH, DLW, PDH, PDW] = Array.from({ length: UNFOLD_PARAMS }, (_, i) => i);
  let next = UNFOLD_PARAMS;
  const local = () => next++;
  const b = local(), d = local(), kk = local(), c = local(), ki = local(), kj = local(), row = local(), dh = local(), dw = local();
  const j = local(), bi = local(), rem = local(), y = local(), P = local(), fast = local();
  const stepJ = local(), stepI = local(), stepC = local();
  const base = Array.from({ length: W }, local), ih = Array.from({ length: W }, local), iw = Array.from({ length: W }, local);
  const em = emitter(), { code, e, get, set, i32, add } = em;
  const inc = (l: number) => add(l, 1);
  panelLoop(em, { OH, OW, P, B0, B1, b, DST, DBS, d });
  for (let i = 0; i < W; i++) {
    // column j = b * W + i: image bi, output row y, column x = rem - y * OW
    get(b); i32(W); e(op.i32Mul); i32(i); e(op.i32Add); set(j);
    get(j); get(N); e(op.i32LtU);
    e(op.if, 0x40);
    decodeColumn(em, { j, P, OW, bi, rem, y });
    get(y); get(STH); e(op.i32Mul); get(PDH); e(op.i32Sub); set(ih[i]);
    get(rem); get(y); get(OW); e(op.i32Mul, op.i32Sub); get(STW); e(op.i32Mul); get(PDW); e(op.i32Sub); set(iw[i]);
    // base = SRC + (bi * sN + ih * sH + iw * sW) * 4
    get(bi); get(SN); e(op.i32Mul); get(ih[i]); get(SH); e(op.i32Mul, op.i32Add); get(iw[i]); get(SW); e(op.i32Mul, op.i32Add);
    i32(4); e(op.i32Mul); get(SRC); e(op.i32Add); set(base[i]);
    e(op.else);
    i32(-(2 ** 30)); set(ih[i]); // never inside the input: a zero column
    e(op.end);
  }
  // A panel whose W columns are W adjacent positions of one output row reading adjacent inputs (stride
  // and input column stride 1): where a k-step's window row and both end columns fall inside the input,
  // its W values are W adjacent floats, copied as vectors.
  get(ih[W - 1]); get(ih[0]); e(op.i32Eq);
  get(iw[W - 1]); get(iw[0]); e(op.i32Sub); i32(W - 1); e(op.i32Eq, op.i32And);
  get(base[W - 1]); get(base[0]); e(op.i32Sub); i32(4 * (W - 1)); e(op.i32Eq, op.i32And);
  set(fast);
  // Without padding every window lies inside the input: a fast panel's k-steps are then all vector
  // copies, from an offset stepped along (window column, row, channel) instead of recomputed.
  get(fast); get(PDH); get(PDW); e(op.i32Or, op.i32Eqz, op.i32And);
  e(op.if, 0x40);
  get(K0); get(KH); get(KW); e(op.i32Mul); e(op.i32DivU); set(c);
  get(K0); get(c); get(KH); get(KW); e(op.i32Mul, op.i32Mul, op.i32Sub); set(rem);
  get(rem); get(KW); e(op.i32DivU); set(ki);
  get(rem); get(ki); get(KW); e(op.i32Mul, op.i32Sub); set(kj);
  // byte steps: to the next window column; from a row's last column to the next row's first; from a channel's last row to the next channel
  get(DLW); get(SW); e(op.i32Mul); i32(4); e(op.i32Mul); set(stepJ);
  get(DLH); get(SH); e(op.i32Mul); i32(4); e(op.i32Mul); get(KW); get(stepJ); e(op.i32Mul, op.i32Sub); set(stepI);
  get(SC); i32(4); e(op.i32Mul); get(KH); get(DLH); get(SH); e(op.i32Mul, op.i32Mul); i32(4); e(op.i32Mul, op.i32Sub); set(stepC);
  get(c); get(SC); e(op.i32Mul); get(ki); get(DLH); e(op.i32Mul); get(SH); e(op.i32Mul, op.i32Add); i32(4); e(op.i32Mul);
  get(kj); get(stepJ); e(op.i32Mul, op.i32Add); get(base[0]); e(op.i32Add); set(row);
  i32(0); set(kk);
  e(op.block, 0x40, op.loop, 0x40);
  get(kk); get(KB); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
  for (let v = 0; v < W / 4; v++) { get(d); get(row); e(op.simd, ...simd.load, 0, ...uleb(16 * v)); e(op.simd, ...simd.store, 0, ...uleb(16 * v)); }
  add(d, 4 * W);
  get(row); get(stepJ); e(op.i32Add); set(row);
  inc(kj);
  get(kj); get(KW); e(op.i32Eq); e(op.if, 0x40);
  i32(0); set(kj); inc(ki); get(row); get(stepI); e(op.i32Add); set(row);
  get(ki); get(KH); e(op.i32Eq); e(op.if, 0x40); i32(0); set(ki); get(row); get(stepC); e(op.i32Add); set(row); e(op.end);
  e(op.end);
  inc(kk);
  e(op.br, 0, op.end, op.end);
  e(op.else);
  kStepLoop(em, { K0, KH, KW, KB, c, ki, kj, kk, rem });
  get(ki); get(DLH); e(op.i32Mul); set(dh);
  get(kj); get(DLW); e(op.i32Mul); set(dw);
  get(c); get(SC); e(op.i32Mul); get(dh); get(SH); e(op.i32Mul, op.i32Add); get(dw); get(SW); e(op.i32Mul, op.i32Add); i32(4); e(op.i32Mul); set(row);
  get(fast);
  get(ih[0]); get(dh); e(op.i32Add); get(H); e(op.i32LtU, op.i32And);
  get(iw[0]); get(dw); e(op.i32Add); get(WI); e(op.i32LtU, op.i32And);
  get(iw[W - 1]); get(dw); e(op.i32Add); get(WI); e(op.i32LtU, op.i32And);
  e(op.if, 0x40);
  for (let v = 0; v < W / 4; v++) { get(d); get(base[0]); get(row); e(op.i32Add); e(op.simd, ...simd.load, 0, ...uleb(16 * v)); e(op.simd, ...simd.store, 0, ...uleb(16 * v)); }
  e(op.else);
  for (let i = 0; i < W; i++) {
    get(d);
    get(ih[i]); get(dh); e(op.i32Add); get(H); e(op.i32LtU);
    get(iw[i]); get(dw); e(op.i32Add); get(WI); e(op.i32LtU);
    e(op.i32And);
    e(op.if, op.f32); get(base[i]); get(row); e(op.i32Add, op.f32Load, 2, 0); e(op.else, op.f32Const, 0, 0, 0, 0, op.end);
    e(op.f32Store, 2, ...uleb(4 * i));
  }
  e(op.end);
  get(d); i32(4 * W); e(op.i32Add); set(d);
  // next window position
  inc(kj);
  get(kj); get(KW); e(op.i32Eq); e(op.if, 0x40);
  i32(0); set(kj); inc(ki);
  get(ki); get(KH); e(op.i32Eq); e(op.if, 0x40); i32(0); set(ki); inc(c); e(op.end);
  e(op.end);
  inc(kk);
  e(op.br, 0, op.end, op.end);
  e(op.end); // the padded case
  inc(b);
  e(op.br, 0, op.end, op.end);
  e(op.end);
  return [...vec([[...uleb(next - UNFOLD_PARAMS), I32]]), ...code];
}

/**
 * The body of addRows(dst, dstRowBytes, src, srcRowBytes, width, rows) (pool.ts AddRowsFn): for each
 * of `rows` rows, dst[x] += src[x] for x < width, four floats at a time, then the rest one by one.
 */
function addRowsBody(): number[] {
  const [DST, DROW, SRC, SROW, WIDTH, ROWS] = [0, 1, 2, 3, 4, 5];
  const y = 6, x = 7, vecEnd = 8;
  const { code, e, get, set, i32 } = emitter();
  // byte offset of the last whole vector's end: width rounded down to 4 floats
  get(WIDTH); i32(-4); e(op.i32And); i32(4); e(op.i32Mul); set(vecEnd);
  get(WIDTH); i32(4); e(op.i32Mul); set(WIDTH);
  i32(0); set(y);
  e(op.block, 0x40, op.loop, 0x40);
  get(y); get(ROWS); e(op.i32GeU, op.brIf, 1);
  i32(0); set(x);
  e(op.block, 0x40, op.loop, 0x40);
  get(x); get(vecEnd); e(op.i32GeU, op.brIf, 1);
  get(DST); get(x); e(op.i32Add);
  get(DST); get(x); e(op.i32Add); e(op.simd, ...simd.load, 2, 0);
  get(SRC); get(x); e(op.i32Add); e(op.simd, ...simd.load, 2, 0);
  e(op.simd, ...simd.add);
  e(op.simd, ...simd.store, 2, 0);
  get(x); i32(16); e(op.i32Add); set(x);
  e(op.br, 0, op.end, op.end);
  e(op.block, 0x40, op.loop, 0x40);
  get(x); get(WIDTH); e(op.i32GeU, op.brIf, 1);
  get(DST); get(x); e(op.i32Add);
  get(DST); get(x); e(op.i32Add, op.f32Load, 2, 0);
  get(SRC); get(x); e(op.i32Add, op.f32Load, 2, 0);
  e(op.f32Add, op.f32Store, 2, 0);
  get(x); i32(4); e(op.i32Add); set(x);
  e(op.br, 0, op.end, op.end);
  get(DST); get(DROW); e(op.i32Add); set(DST);
  get(SRC); get(SROW); e(op.i32Add); set(SRC);
  get(y); i32(1); e(op.i32Add); set(y);
  e(op.br, 0, op.end, op.end);
  e(op.end);
  return [...vec([[3, I32]]), ...code];
}

/**
 * The body of packUnfoldedRows (pool.ts UnfoldFn, the same arguments as packUnfolded) for an
 * unfolding without padding whose window rows are adjacent floats (input column stride and dilation 1)
 * -- a weight gradient's, whose "window" is the whole output gradient: every column's window lies inside
 * the input, so nothing is checked, and four k-steps of a window row are four adjacent floats per column,
 * loaded as one vector each and transposed in registers, 4 x 4 (transpose4). Columns past n repeat the
 * last one: the gemm's result columns past n are never read.
 */
function unfoldRowsBody(W: number): number[] {
  const [DST, DBS, B0, B1, KB, K0, N, SRC, SN, SC, SH, SW, KH, KW, OH, OW, , , STH, STW, DLH] = Array.from({ length: UNFOLD_PARAMS }, (_, i) => i);
  let next = UNFOLD_PARAMS;
  const local = () => next++;
  const b = local(), d = local(), kk = local(), c = local(), ki = local(), kj = local(), row = local(), j = local(), bi = local(), rem = local(), y = local(), P = local();
  const base = Array.from({ length: W }, local);
  const v0 = next; // the v128 locals: W loaded, 4 shuffled
  const em = emitter(), { code, e, get, set, i32, add } = em;
  panelLoop(em, { OH, OW, P, B0, B1, b, DST, DBS, d });
  for (let i = 0; i < W; i++) {
    // column j = min(b * W + i, n - 1): image bi, output row y, column x = rem - y * OW
    get(b); i32(W); e(op.i32Mul); i32(i); e(op.i32Add); set(j);
    get(j); get(N); e(op.i32GeU); e(op.if, 0x40); get(N); i32(1); e(op.i32Sub); set(j); e(op.end);
    decodeColumn(em, { j, P, OW, bi, rem, y });
    // base = SRC + (bi * sN + y * strideH * sH + x * strideW * sW) * 4
    get(bi); get(SN); e(op.i32Mul);
    get(y); get(STH); e(op.i32Mul); get(SH); e(op.i32Mul, op.i32Add);
    get(rem); get(y); get(OW); e(op.i32Mul, op.i32Sub); get(STW); e(op.i32Mul); get(SW); e(op.i32Mul, op.i32Add);
    i32(4); e(op.i32Mul); get(SRC); e(op.i32Add); set(base[i]);
  }
  kStepLoop(em, { K0, KH, KW, KB, c, ki, kj, kk, rem });
  get(c); get(SC); e(op.i32Mul); get(ki); get(DLH); e(op.i32Mul); get(SH); e(op.i32Mul, op.i32Add); get(kj); e(op.i32Add); i32(4); e(op.i32Mul); set(row);
  get(kj); i32(4); e(op.i32Add); get(KW); e(op.i32LeU);
  get(kk); i32(4); e(op.i32Add); get(KB); e(op.i32LeU, op.i32And);
  e(op.if, 0x40);
  for (let i = 0; i < W; i++) { get(base[i]); get(row); e(op.i32Add); e(op.simd, ...simd.load, 0, 0); set(v0 + i); }
  transpose4(W, d, (i) => v0 + i, (i) => v0 + W + i, e);
  add(d, 16 * W); add(kk, 4); add(kj, 4);
  e(op.else);
  for (let i = 0; i < W; i++) { get(d); get(base[i]); get(row); e(op.i32Add, op.f32Load, 2, 0, op.f32Store, 2, ...uleb(4 * i)); }
  add(d, 4 * W); add(kk, 1); add(kj, 1);
  e(op.end);
  // next window row
  get(kj); get(KW); e(op.i32Eq); e(op.if, 0x40);
  i32(0); set(kj); add(ki, 1);
  get(ki); get(KH); e(op.i32Eq); e(op.if, 0x40); i32(0); set(ki); add(c, 1); e(op.end);
  e(op.end);
  e(op.br, 0, op.end, op.end);
  add(b, 1);
  e(op.br, 0, op.end, op.end);
  e(op.end);
  return [...vec([[...uleb(next - UNFOLD_PARAMS), I32], [...uleb(W + 4), V128]]), ...code];
}

/**
 * The body of biasRelu(dst, rows, rowBytes, vectors, bias, relu) (pool.ts BiasReluFn): each of `rows`
 * rows of `vectors` float vectors from dst gets its row's bias added (bias: byte pointer to one float
 * per row; 0: none) and, with relu, x < 0 replaced by 0 (f32x4.pmax: a NaN and -0 stay, as the
 * JavaScript epilogue's select leaves them).
 */
function biasReluBody(): number[] {
  const [DST, ROWS, ROWB, VECS, BIAS, RELU] = [0, 1, 2, 3, 4, 5];
  const y = 6, v = 7, at = 8, x = 9, b = 10, zero = 11;
  const { code, e, get, set, i32, add } = emitter();
  e(op.simd, ...simd.const, ...new Array(16).fill(0)); set(zero);
  i32(0); set(y);
  e(op.block, 0x40, op.loop, 0x40);
  get(y); get(ROWS); e(op.i32GeU, op.brIf, 1);
  get(BIAS); e(op.if, 0x40); get(BIAS); get(y); i32(4); e(op.i32Mul, op.i32Add); e(op.simd, ...simd.splat32, 2, 0); set(b); e(op.end);
  get(DST); get(y); get(ROWB); e(op.i32Mul, op.i32Add); set(at);
  i32(0); set(v);
  e(op.block, 0x40, op.loop, 0x40);
  get(v); get(VECS); e(op.i32GeU, op.brIf, 1);
  get(at); e(op.simd, ...simd.load, 0, 0); set(x);
  get(BIAS); e(op.if, 0x40); get(x); get(b); e(op.simd, ...simd.add); set(x); e(op.end);
  get(RELU); e(op.if, 0x40); get(x); get(zero); e(op.simd, ...simd.pmax); set(x); e(op.end); // pmax(x, 0) = x < 0 ? 0 : x
  get(at); get(x); e(op.simd, ...simd.store, 0, 0);
  add(at, 16); add(v, 1);
  e(op.br, 0, op.end, op.end);
  add(y, 1);
  e(op.br, 0, op.end, op.end);
  e(op.end);
  return [...vec([[3, I32], [3, V128]]), ...code];
}

/** Parameters of the dot kernel (pool.ts DotFn). */
const DOT_PARAMS = 17;

/**
 * The body of dot (pool.ts DotFn): C = A @ B with k read where the operands are, four k-steps per
 * vector, no packing -- a weight gradient's product, whose k (an image's window positions, in rows of
 * L adjacent floats in both operands) is long and whose C is small. Per image (a block of k that stays
 * in cache), per tile of 4 rows x 2 columns: its 8 accumulators (vectors of partial sums, one per k-step
 * mod 4) loaded (zero for the first image), then per window row r and 4 k-steps j: 4 rows of A and 2
 * columns of B loaded as vectors and multiplied lane by lane; stored back. Rows past M read row M - 1;
 * the caller sums each accumulator's lanes.
 */
function dotBody(relaxed: boolean): number[] {
  const [ACC, A0, SAO, SAN, ARUN, BT, SBN, BRUN, RB0, RB1, CP0, CP1, NP, IMAGES, R, L, M] = Array.from({ length: DOT_PARAMS }, (_, i) => i);
  let next = DOT_PARAMS;
  const local = () => next++;
  const img = local(), rb = local(), cp = local(), r = local(), jb = local(), aN = local(), bOff = local(), accp = local(), ra = local(), rbb = local(), lb = local(), row = local();
  const a = [local(), local(), local(), local()], b = [local(), local()], qa = [local(), local(), local(), local()], pb = [local(), local()];
  const nI32 = next - DOT_PARAMS;
  const v0 = next, acc = (i: number, c: number) => v0 + 2 * i + c, vb = (c: number) => v0 + 8 + c, va = v0 + 10;
  const { code, e, get, set, i32, add } = emitter();
  const loop = (counter: number, from: number | null, to: number, body: () => void) => {
    if (from === null) i32(0); else get(from);
    set(counter);
    e(op.block, 0x40, op.loop, 0x40);
    get(counter); get(to); e(op.i32GeU, op.brIf, 1);
    body();
    add(counter, 1);
    e(op.br, 0, op.end, op.end);
  };
  get(L); i32(4); e(op.i32Mul); set(lb);
  loop(img, null, IMAGES, () => {
    get(A0); get(img); get(SAN); e(op.i32Mul, op.i32Add); set(aN);
    get(img); get(SBN); e(op.i32Mul); set(bOff);
    loop(rb, RB0, RB1, () => {
      for (let i = 0; i < 4; i++) {
        // row rb * 4 + i, or the last row past M
        get(rb); i32(4); e(op.i32Mul); i32(i); e(op.i32Add); set(row);
        get(row); get(M); e(op.i32GeU); e(op.if, 0x40); get(M); i32(1); e(op.i32Sub); set(row); e(op.end);
        get(aN); get(row); get(SAO); e(op.i32Mul, op.i32Add); set(a[i]);
      }
      loop(cp, CP0, CP1, () => {
        for (let c = 0; c < 2; c++) { get(BT); get(cp); i32(8); e(op.i32Mul, op.i32Add); e(op.i32Load, 2, ...uleb(4 * c)); get(bOff); e(op.i32Add); set(b[c]); }
        get(ACC); get(rb); get(NP); e(op.i32Mul); get(cp); e(op.i32Add); i32(128); e(op.i32Mul, op.i32Add); set(accp);
        get(img); e(op.i32Eqz); e(op.if, 0x40);
        for (let t = 0; t < 8; t++) { e(op.simd, ...simd.const, ...new Array(16).fill(0)); set(v0 + t); }
        e(op.else);
        for (let t = 0; t < 8; t++) { get(accp); e(op.simd, ...simd.load, 4, ...uleb(16 * t)); set(v0 + t); }
        e(op.end);
        i32(0); set(ra); i32(0); set(rbb);
        loop(r, null, R, () => {
          for (let i = 0; i < 4; i++) { get(a[i]); get(ra); e(op.i32Add); set(qa[i]); }
          for (let c = 0; c < 2; c++) { get(b[c]); get(rbb); e(op.i32Add); set(pb[c]); }
          i32(0); set(jb);
          e(op.block, 0x40, op.loop, 0x40);
          get(jb); get(lb); e(op.i32GeU, op.brIf, 1);
          for (let c = 0; c < 2; c++) { get(pb[c]); get(jb); e(op.i32Add); e(op.simd, ...simd.load, 0, 0); set(vb(c)); }
          for (let i = 0; i < 4; i++) {
            get(qa[i]); get(jb); e(op.i32Add); e(op.simd, ...simd.load, 0, 0); set(va);
            for (let c = 0; c < 2; c++) {
              if (relaxed) { get(va); get(vb(c)); get(acc(i, c)); e(op.simd, ...simd.madd); }
              else { get(acc(i, c)); get(va); get(vb(c)); e(op.simd, ...simd.mul, op.simd, ...simd.add); }
              set(acc(i, c));
            }
          }
          add(jb, 16);
          e(op.br, 0, op.end, op.end);
          get(ra); get(ARUN); e(op.i32Add); set(ra);
          get(rbb); get(BRUN); e(op.i32Add); set(rbb);
        });
        for (let t = 0; t < 8; t++) { get(accp); get(v0 + t); e(op.simd, ...simd.store, 4, ...uleb(16 * t)); }
      });
    });
  });
  e(op.end);
  return [...vec([[...uleb(nI32), I32], [...uleb(11), V128]]), ...code];
}

/** i8x16.shuffle's 16 byte lanes for four 32-bit lanes (0-3 of the first operand, 4-7 of the second). */
const lanes = (...l: number[]): number[] => l.flatMap((x) => [4 * x, 4 * x + 1, 4 * x + 2, 4 * x + 3]);

/**
 * Stores four k-steps of W columns from W vectors, vec(i) holding column i's four values: per four
 * columns a 4 x 4 transpose (tmp: four scratch vectors), k-step s of columns q.. at d + (s * W + q) * 4.
 */
function transpose4(W: number, d: number, vec: (i: number) => number, tmp: (i: number) => number, e: (...xs: number[]) => void): void {
  const shuffle = (a: number, b: number, ls: number[]) => e(op.get, a, op.get, b, op.simd, ...simd.shuffle, ...lanes(...ls));
  for (let q = 0; q < W; q += 4) {
    const r = (i: number) => vec(q + i);
    shuffle(r(0), r(1), [0, 4, 1, 5]); e(op.set, tmp(0));
    shuffle(r(0), r(1), [2, 6, 3, 7]); e(op.set, tmp(1));
    shuffle(r(2), r(3), [0, 4, 1, 5]); e(op.set, tmp(2));
    shuffle(r(2), r(3), [2, 6, 3, 7]); e(op.set, tmp(3));
    const store = (a: number, b: number, ls: number[], s: number) => { e(op.get, d); shuffle(a, b, ls); e(op.simd, ...simd.store, 0, ...uleb((s * W + q) * 4)); };
    store(tmp(0), tmp(2), [0, 1, 4, 5], 0); store(tmp(0), tmp(2), [2, 3, 6, 7], 1);
    store(tmp(1), tmp(3), [0, 1, 4, 5], 2); store(tmp(1), tmp(3), [2, 3, 6, 7], 3);
  }
}

/**
 * C = A @ B with each operand as the generated kernel sees it: a typed array, an offset and strides
 * (elements). Returns C's m rows, each padded to whole register blocks (row stride `ldc`, so the array
 * holds m * ldc floats), in the gemm's scratch memory: valid until the next call, and the same array
 * object for the same place and size. `split` says whether the product may run on several threads: generated kernels pass the decision made
 * at compile time (gemmSplitPays); left out, it is made here by the same rule.
 */
export type Gemm = ((a: Float32Array, offA: number, sam: number, sak: number, b: Float32Array, offB: number, sbk: number, sbn: number, m: number, n: number, k: number, split?: boolean) => { c: Float32Array; ldc: number }) & {
  /** C = A @ B where B is a convolution's input unfolded as im2col would (k = channels x window, n = images x output positions). */
  unfolded(a: Float32Array, offA: number, sam: number, sak: number, u: Unfolding, m: number, n: number, k: number, split?: boolean, aRuns?: Runs): { c: Float32Array; ldc: number };
  /**
   * A transposed convolution's product and col2im in one job (conv-gemm.ts): per image of B (an
   * input read as a 1 x 1 window, u.h x u.w columns each), C = A @ B, then each row of C (channel o,
   * window position t) added into the region (which must be taken) at `into`'s place for o, shifted by t.
   */
  scattered(a: Float32Array, offA: number, sam: number, sak: number, u: Unfolding, m: number, n: number, k: number, into: Scatter): void;
  /**
   * A convolution image by image (B unfolded, n / into.images columns per image): each image's C written
   * straight into `into.out` (an array in the pool's memory) from float `at + i * image`, its rows p
   * floats apart -- the convolution's output layout, with no copy. Only where placesImages(m, p).
   */
  placed(a: Float32Array, offA: number, sam: number, sak: number, u: Unfolding, m: number, n: number, k: number, into: Placement): void;
  /** Whether a product of m rows by p columns per image has whole row blocks and panels, as Gemm.placed needs (its output in the pool's memory too: readsInPlace). */
  placesImages(m: number, p: number): boolean;
  /**
   * Whether an unfolded product can be dotted (Gemm.dotted): unpadded window rows of whole vectors
   * (kw a multiple of 4, adjacent floats), a small C over a long k (splitsK) -- a weight gradient's.
   */
  dots(u: Unfolding, m: number, n: number, k: number): boolean;
  /**
   * C = A @ B for a convolution's unfolded B (`dots`), with no packing: the dot kernel (pool.ts DotFn)
   * reads both where they are, four k-steps per vector, each C element's sums in one thread; image i's
   * C rows (m channels, n / into.images floats each) written into `into.out` from `at + i * image`.
   * A is the weight as `aw` reads it (its window rows adjacent floats, as B's).
   */
  dotted(aw: Windowed, u: Unfolding, m: number, n: number, k: number, into: Placement): void;
  /** Whether `x` is read where it is (an array in the pool's memory, Pool.array), not copied in. */
  readsInPlace(x: Float32Array): boolean;
  /**
   * Whether an unfolded product of m rows by n columns over k packs its B a chunk of panels at a time (it
   * splits by columns or along k): then B's size needs no bound; else B is packed whole before the product.
   */
  streamsUnfolded(m: number, n: number, k: number): boolean;
  /** Whether the product splits along k (pool.ts runPart axis 2): then its A may be read in runs (unfolded's aRuns). */
  splitsK(m: number, n: number, k: number): boolean;
  /** the pool big products are split over (null: one thread), which split JavaScript kernels share */
  readonly threads: Pool | null;
  /**
   * An array of `floats` in the WebAssembly memory that later products leave alone (their scratch starts
   * after it) until region(0) gives it back: what addRows adds into (conv-cpu.ts's col2im).
   */
  region(floats: number): Float32Array;
  /** rows of `width` floats added from a product's result into the region: dst[d + y * dRow + x] += src[s + y * sRow + x] (indices into either's array). */
  addRows(dst: Float32Array, d: number, dRow: number, src: Float32Array, s: number, sRow: number, width: number, rows: number): void;
  /**
   * A convolution whose input the gemm's packers unfold (conv-gemm.ts), as convCpu's result: into `out`,
   * or (with `epi`) the caller's output with its epilogue, then null.
   */
  convolve(a: ConvAttrs, x: Float32Array, xv: View, w: Float32Array, wv: View, geo: ConvGeometry, out: Float32Array, epi?: ConvEpilogue): Float32Array | null;
};

/**
 * A's k index in runs (unfolded's aRuns): k-step kk is element kk mod `length` (stride sak) of run
 * floor(kk / length), runs `stride` elements apart -- a convolution's weight, one run per input channel,
 * read where it is. Only for A read in place by a product split along k (splitsK), whose parts pack it.
 */
export interface Runs { length: number; stride: number }

/**
 * Where a scattered product's rows go (Gemm.scattered): C's row o * kh * kw + t, for image i, is added
 * into the region from float `at + i * image + o * channel`, shifted by window position t = (ti, tj)
 * to ti * dh rows of `outWidth` floats and tj * dw floats; `channels` rows' worth of channels o.
 */
export interface Scatter { at: number; image: number; channel: number; channels: number; images: number; kh: number; kw: number; dh: number; dw: number; outWidth: number }

/**
 * A convolution's weight as a dotted product reads it (Gemm.dotted): row o (output channel), channel c,
 * window row i and column j at `off + o * sRow + c * sImage + i * sRun + j`.
 */
export interface Windowed { a: Float32Array; off: number; sRow: number; sImage: number; sRun: number }

/**
 * Where a placed product's images go (Gemm.placed): image i's C from float `at + i * image` of `out`;
 * then, given, row o's bias (`bias.b[bias.at + o]`) added to it and ReLU applied (a convolution's
 * epilogue, js.ts gemmEpilogue).
 */
export interface Placement { out: Float32Array; at: number; image: number; images: number; bias?: { b: Float32Array; at: number }; relu?: boolean }

/**
 * A block of a 2-d convolution's input read as B[(c, i, j), (image, y, x)] (pool.ts UnfoldFn): element
 * strides of `x` from `off` (image 0, channel 0 of the block), window, output and input sizes, stride,
 * dilation and low padding per spatial dim (a 1-d convolution has h = kh = oh = 1).
 */
export interface Unfolding {
  x: Float32Array; off: number; sN: number; sC: number; sH: number; sW: number;
  kh: number; kw: number; oh: number; ow: number; h: number; w: number;
  strideH: number; strideW: number; dilationH: number; dilationW: number; padH: number; padW: number;
}

/**
 * The micro-kernels: 4 rows x 8 columns (8 accumulators, 2 panel vectors, 1 splat) measured fastest here
 * for both, against 2x16, 3x8, 6x8, 2x12, 3x12, 4x12, 5x12 and 8x4: wider blocks make V8 spill.
 */
export const PLAIN: KernelShape = { RB: 4, CB: 2, relaxed: false };
export const RELAXED: KernelShape = { RB: 4, CB: 2, relaxed: true };
/** Values of k per block: a row block (RB x KC) and a panel (KC x 4CB) stay in the first-level cache. */
export const KC = 256;
/** Products split along k: C of at most this many floats (its segments' Cs stay in the second-level cache) ... */
const SPLIT_K_C = 1 << 15;
/** ... over at least this many blocks of k (two segments of four blocks). */
const SPLIT_K_BLOCKS = 8;

/** Whether this engine accepts a module with `shape` (relaxed SIMD needs Chrome/Firefox, or Node with a flag). */
export function kernelSupported(shape: KernelShape): boolean {
  try {
    return typeof WebAssembly !== 'undefined' && WebAssembly.validate(gemmModule(shape, false));
  } catch {
    return false;
  }
}

/**
 * A gemm over a given kernel shape. `threads` is the pool to split big products over (null: one thread,
 * with a memory of its own). The module's packers pack each operand from where it is in the pool's memory
 * (Pool.array: a compiled program's arrays) or from a raw copy of the span it occupies: the operand the
 * parts share before the job, the one they split by each part for itself, in parallel (pool.ts runPart).
 * An operand spread far wider than its elements is packed here instead.
 */
export function makeGemm(shape: KernelShape = bestShape(), kc = KC, threads: Pool | null = pool()): Gemm | null {
  if (!kernelSupported(shape)) return null;
  const { RB, CB } = shape, NR = 4 * CB;
  const bytes = gemmModule(shape, threads !== null);
  const mem = threads ? threads.memory : new WebAssembly.Memory({ initial: 1 });
  const mod = new WebAssembly.Module(bytes);
  const fns = new WebAssembly.Instance(mod, { env: { mem } }).exports as unknown as GemmFns;
  const kernelId = threads ? threads.addKernel(bytes) : -1;
  let heap = new Float32Array(mem.buffer);
  /** how many floats at the scratch's start region() keeps, and its view */
  let reserved = 0, regionView = heap.subarray(0, 0);
  // Results (m rows of ldc) as the same array object per place and size while the memory stays: split
  // kernels' workers know arrays by identity (a new one is posted to them).
  let views = new Map<string, Float32Array>(), viewsOf = heap.buffer;
  const rowsOf = (at: number, length: number): Float32Array => {
    if (viewsOf !== heap.buffer) { views = new Map(); viewsOf = heap.buffer; }
    const key = `${at}:${length}`;
    let v = views.get(key);
    if (!v) views.set(key, (v = heap.subarray(at, at + length)));
    return v;
  };
  /**
   * The scratch's start (floats) once it holds `need` floats, region()'s kept (what: the product, why:
   * what it holds): the pool's scratch block, which may move, or this gemm's own memory from 0.
   */
  const scratch = (need: number, what: string, why: string): number => {
    let at: number | null = 0;
    if (threads) at = threads.scratch(need * 4, reserved * 4);
    else if (need * 4 > mem.buffer.byteLength) {
      try { mem.grow(Math.ceil((need * 4 - mem.buffer.byteLength) / 65536)); } catch { at = null; }
    }
    if (at === null) throw new Error(`gemm: ${what} needs ${Math.ceil((need * 4) / 2 ** 20)} MiB of WebAssembly memory for ${why}, more than this engine gives${threads ? ` (the thread pool's memory holds at most ${MAX_PAGES / 16} MiB)` : ''}`);
    if (heap.buffer !== mem.buffer) heap = new Float32Array(mem.buffer); // grown, here or by another gemm on this memory
    return at / 4;
  };
  /** Whether the gemm reads `x` where it is: an array in the pool's memory (Pool.array), which needs no copy in. */
  const inPlace = (x: Float32Array): boolean => threads !== null && threads.owns(x);
  /**
   * Whether a product splits along k (axis 2, pool.ts runPart): a small C (at most SPLIT_K_C floats) over a
   * long k (SPLIT_K_BLOCKS blocks or more) -- a weight gradient's shape, whose few rows and columns give
   * too few parts to split, and whose packing before the job would run on one thread.
   */
  const splitsK = (m: number, n: number, k: number): boolean => Math.ceil(m / RB) * RB * Math.ceil(n / NR) * NR <= SPLIT_K_C && k >= SPLIT_K_BLOCKS * kc;
  /** k's segments on axis 2: from the shape alone, so that any number of threads adds the same partial sums in the same order. */
  const kSegments = (k: number): number => Math.min(8, Math.floor(Math.ceil(k / kc) / 4));
  /** Whether a product of m rows by p columns per image is written in place image by image (Gemm.placed): whole row blocks and panels. */
  const placesImages = (m: number, p: number): boolean => m % RB === 0 && p % NR === 0;
  /** Split over column panels (0) when there are at least as many as row blocks, else over row blocks (1). */
  const splitAxis = (m: number, n: number): number => (Math.ceil(n / NR) >= Math.ceil(m / RB) ? 0 : 1);
  type BSource = { b: Float32Array; offB: number; sbk: number; sbn: number } | { u: Unfolding; into?: Scatter | Placement };
  const run = (a: Float32Array, offA: number, sam: number, sak: number, src: BSource, m: number, n: number, k: number, split: boolean, aRuns?: Runs) => {
    const into = 'into' in src ? src.into : undefined, p = into ? n / into.images : n; // p: a scattered product's columns per image
    // C's row stride: a scattered product keeps one image's columns per part
    const mb = Math.ceil(m / RB), np = Math.ceil(n / NR), mp = mb * RB, ldc = Math.ceil(p / NR) * NR;
    if (aRuns && !(inPlace(a) && splitsK(m, n, k))) throw new Error('gemm: A in runs must be read in place by a product split along k');
    const spanA = aRuns ? { lo: offA, hi: offA + 1 } : span(offA, m, sam, k, sak); // in place: only its start matters
    const spanB = 'u' in src ? unfoldedSpan(src.u, n, k) : span(src.offB, k, src.sbk, n, src.sbn);
    // an unfolded B is always read raw; a strided one when it is not spread far wider than its elements
    const raw = 'u' in src || (spanA.hi - spanA.lo <= 2 * m * k + 64 && spanB.hi - spanB.lo <= 2 * k * n + 64);
    const b = 'u' in src ? src.u.x : src.b, aIn = raw && inPlace(a), bIn = raw && inPlace(b);
    // a placed product's bias (one float per row) where it is, or copied in after the operands
    const bias = into && 'out' in into ? into.bias : undefined, biasIn = !bias || inPlace(bias.b);
    const copied = raw ? (aIn ? 0 : spanA.hi - spanA.lo) + (bIn ? 0 : spanB.hi - spanB.lo) + (biasIn ? 0 : m) : 0;
    // the parts pack their own operand (from a raw one) into a buffer each, or (axis 2) both (pool.ts runPart)
    const axis = into ? 3 : raw && splitsK(m, n, k) ? 2 : splitAxis(m, n), segments = axis === 2 ? kSegments(k) : 1;
    const packed = packedFloats(mp, ldc, k, kc, RB, NR, axis, raw, split && threads ? threads.size : 1, segments);
    const pa = scratch(reserved + packed.a + packed.b + packed.c + copied, `a ${m}x${k} @ ${k}x${n} product`, 'its packed operands') + reserved;
    const pb = pa + packed.a, pc = pb + packed.b;
    let job: GemmJob;
    if (raw) {
      // Each operand's span where it is, or copied raw after C: byte addresses of elements lo.
      const rawA = pc + packed.c, rawB = rawA + (aIn ? 0 : spanA.hi - spanA.lo);
      if (!aIn) heap.set(a.subarray(spanA.lo, spanA.hi), rawA);
      if (!bIn) heap.set(b.subarray(spanB.lo, spanB.hi), rawB);
      const loA = aIn ? a.byteOffset + spanA.lo * 4 : rawA * 4, loB = bIn ? b.byteOffset + spanB.lo * 4 : rawB * 4;
      const srcA = loA + (offA - spanA.lo) * 4;
      const [srcB, sbk, sbn] = 'u' in src ? [0, 0, 0] : [loB + (src.offB - spanB.lo) * 4, src.sbk, src.sbn];
      const u = 'u' in src ? unfoldingArgs(src.u, loB) : new Array<number>(17).fill(0);
      const rows = 'u' in src && byRows(src.u);
      for (let k0 = 0; k0 < k && axis !== 2; k0 += kc) {
        const kb = Math.min(kc, k - k0);
        if (axis === 0 || axis === 3) fns.packA((pa + mp * k0) * 4, kb * RB * 4, srcA + k0 * sak * 4, sam, sak, m, 0, mb, kb);
        else if ('u' in src) (rows ? fns.packUnfoldedRows : fns.packUnfolded)((pb + ldc * k0) * 4, kb * NR * 4, 0, np, kb, k0, n, ...u);
        else fns.packB((pb + ldc * k0) * 4, kb * NR * 4, srcB + k0 * sbk * 4, sbn, sbk, n, 0, np, kb);
      }
      let biasAt = 0;
      if (bias) {
        const rawBias = rawB + (bIn ? 0 : spanB.hi - spanB.lo);
        if (!biasIn) heap.set(bias.b.subarray(bias.at, bias.at + m), rawBias);
        biasAt = biasIn ? bias.b.byteOffset + bias.at * 4 : rawBias * 4;
      }
      // a scattered product's output is in the region, at the scratch's start (where the scratch is now)
      const imagewise = !into || !('u' in src) ? new Array<number>(16).fill(0)
        : 'out' in into ? [into.out.byteOffset + into.at * 4, into.image * 4, p * 4, 0, 0, 0, 0, 0, 0, 0, 0, p, into.images, src.u.sN * 4, biasAt, into.relu ? 1 : 0]
        : [(pa - reserved + into.at) * 4, into.image * 4, into.channel * 4, into.channels, into.kh * into.kw, into.kw, into.dh * into.outWidth * 4, into.dw * 4,
          into.outWidth * 4, src.u.w, src.u.h, p, into.images, src.u.sN * 4, 0, 0];
      job = [pa * 4, pb * 4, pc * 4, mb, np, k, ldc * 4, kc, RB, NR, axis, srcA, sam, sak, srcB, sbk, sbn, m, n, 'u' in src ? (rows ? 3 : 2) : 1,
        aRuns?.length ?? 0, aRuns?.stride ?? 0, segments, ...u, ...imagewise] as unknown as GemmJob;
    } else {
      const { b, offB, sbk, sbn } = src;
      for (let k0 = 0; k0 < k; k0 += kc) {
        const kb = Math.min(kc, k - k0);
        packA(heap, pa + mp * k0, a, offA + k0 * sak, sam, sak, m, mp, kb, RB);
        packB(heap, pb + ldc * k0, b, offB + k0 * sbk, sbk, sbn, n, np, kb, NR);
      }
      job = [pa * 4, pb * 4, pc * 4, mb, np, k, ldc * 4, kc, RB, NR, axis, ...new Array<number>(6).fill(0), m, n, 0, 0, 0, 1, ...new Array<number>(33).fill(0)] as unknown as GemmJob;
    }
    if (split && threads && threads.size > 1) threads.run(kernelId, fns, job);
    else runPart(fns, job, 0, 1);
    // the segments' Cs added up in order into the first (SIMD)
    for (let s = 1; s < segments; s++) fns.addRows(pc * 4, 0, (pc + s * mp * ldc) * 4, 0, m * ldc, 1);
    return { c: rowsOf(pc, m * ldc), ldc };
  };
  /**
   * A dotted product (Gemm.dotted): the dot kernel's job (pool.ts runPart axis 4) over accumulators and a
   * table of B's column starts in the scratch, then each accumulator's four partial sums, in lane order,
   * into the output's layout.
   */
  const dotted = (aw: Windowed, u: Unfolding, m: number, n: number, k: number, into: Placement): void => {
    if (!(byRows(u) && u.kw % 4 === 0)) throw new Error('gemm: a dotted product reads window rows of whole vectors, unpadded');
    const mb = Math.ceil(m / RB), pairs = Math.ceil(n / 2), channels = k / (u.kh * u.kw), P = n / into.images;
    // A's and B's spans where they are, or copied in raw after the accumulators and B's column table
    const spanA = spanOf(aw.off, [[m, aw.sRow], [channels, aw.sImage], [u.kh, aw.sRun], [u.kw, 1]]), spanB = unfoldedSpan(u, n, k);
    const aIn = inPlace(aw.a), bIn = inPlace(u.x);
    const accFloats = mb * pairs * 32, copied = (aIn ? 0 : spanA.hi - spanA.lo) + (bIn ? 0 : spanB.hi - spanB.lo);
    const at = scratch(reserved + accFloats + 2 * pairs + copied, `a ${m}x${k} @ ${k}x${n} product`, 'its accumulators') + reserved;
    const table = at + accFloats, rawA = table + 2 * pairs, rawB = rawA + (aIn ? 0 : spanA.hi - spanA.lo);
    if (!aIn) heap.set(aw.a.subarray(spanA.lo, spanA.hi), rawA);
    if (!bIn) heap.set(u.x.subarray(spanB.lo, spanB.hi), rawB);
    const a0 = (aIn ? aw.a.byteOffset + spanA.lo * 4 : rawA * 4) + (aw.off - spanA.lo) * 4, b0 = bIn ? u.x.byteOffset + spanB.lo * 4 : rawB * 4;
    // column j = (image, y, x): where its window starts (a last odd column's pair repeats it)
    const columns = new Int32Array(heap.buffer, table * 4, 2 * pairs), per = u.oh * u.ow;
    for (let j = 0; j < 2 * pairs; j++) {
      const col = Math.min(j, n - 1), image = Math.floor(col / per), y = Math.floor((col - image * per) / u.ow), x = col - image * per - y * u.ow;
      columns[j] = b0 + (image * u.sN + y * u.strideH * u.sH + x * u.strideW * u.sW) * 4;
    }
    // axis 4 reads mBlocks and its own 13 numbers (DotFn's) only
    const job = [0, 0, 0, mb, 0, k, 0, kc, RB, NR, 4, ...new Array<number>(29).fill(0),
      at * 4, a0, aw.sRow * 4, aw.sImage * 4, aw.sRun * 4, table * 4, u.sC * 4, u.dilationH * u.sH * 4, pairs, channels, u.kh, u.kw, m, 0, 0, 0] as unknown as GemmJob;
    if (gemmSplitPays(m, n, k) && threads && threads.size > 1) threads.run(kernelId, fns, job);
    else runPart(fns, job, 0, 1);
    const acc = heap.subarray(at, at + accFloats), out = into.out;
    for (let o = 0; o < m; o++) {
      const rb = Math.floor(o / RB), i = o - rb * RB;
      for (let j = 0; j < n; j++) {
        const t = ((rb * pairs + (j >> 1)) * 8 + i * 2 + (j & 1)) * 4, image = Math.floor(j / P);
        out[into.at + image * into.image + o * P + (j - image * P)] = Math.fround(Math.fround(Math.fround(acc[t] + acc[t + 1]) + acc[t + 2]) + acc[t + 3]);
      }
    }
  };
  const gemm = (a: Float32Array, offA: number, sam: number, sak: number, b: Float32Array, offB: number, sbk: number, sbn: number, m: number, n: number, k: number, split = gemmSplitPays(m, n, k)) =>
    run(a, offA, sam, sak, { b, offB, sbk, sbn }, m, n, k, split);
  const self: Gemm = Object.assign(gemm, {
    unfolded: (a: Float32Array, offA: number, sam: number, sak: number, u: Unfolding, m: number, n: number, k: number, split = gemmSplitPays(m, n, k), aRuns?: Runs) =>
      run(a, offA, sam, sak, { u }, m, n, k, split, aRuns),
    scattered: (a: Float32Array, offA: number, sam: number, sak: number, u: Unfolding, m: number, n: number, k: number, into: Scatter) => {
      if (u.kh !== 1 || u.kw !== 1 || n !== into.images * u.h * u.w) throw new Error('gemm: a scattered product reads its images as a 1 x 1 window, h x w columns each');
      if (reserved === 0) throw new Error('gemm: a scattered product adds into the region: take one first');
      run(a, offA, sam, sak, { u, into }, m, n, k, gemmSplitPays(m, n, k));
    },
    placed: (a: Float32Array, offA: number, sam: number, sak: number, u: Unfolding, m: number, n: number, k: number, into: Placement) => {
      if (!placesImages(m, n / into.images) || !inPlace(into.out)) throw new Error('gemm: a placed product writes whole panels and row blocks into an array in the pool\'s memory');
      run(a, offA, sam, sak, { u, into }, m, n, k, gemmSplitPays(m, n, k));
    },
    placesImages,
    dots: (u: Unfolding, m: number, n: number, k: number) => byRows(u) && u.kw % 4 === 0 && splitsK(m, n, k),
    dotted,
    readsInPlace: inPlace,
    streamsUnfolded: (m: number, n: number, k: number) => splitsK(m, n, k) || splitAxis(m, n) === 0,
    splitsK,
    threads,
    region: (floats: number) => {
      const at = scratch(floats, `a region of ${floats} floats`, 'it');
      reserved = floats;
      // the same array while the memory, the place and the size stay (split kernels' workers know it by identity)
      if (regionView.buffer !== heap.buffer || regionView.byteOffset !== at * 4 || regionView.length !== floats) regionView = heap.subarray(at, at + floats);
      return regionView;
    },
    addRows: (dst: Float32Array, d: number, dRow: number, src: Float32Array, s0: number, sRow: number, width: number, rows: number) =>
      fns.addRows(dst.byteOffset + d * 4, dRow * 4, src.byteOffset + s0 * 4, sRow * 4, width, rows),
    convolve: (a: ConvAttrs, x: Float32Array, xv: View, w: Float32Array, wv: View, geo: ConvGeometry, out: Float32Array, epi?: ConvEpilogue) => convolveUnfolded(self, a, x, xv, w, wv, geo, out, epi),
  });
  return self;
}

/** The elements [lo, hi) of `u.x` an unfolded B of k x n reads (the block's images and channels). */
function unfoldedSpan(u: Unfolding, n: number, k: number): { lo: number; hi: number } {
  const images = n / (u.oh * u.ow), channels = k / (u.kh * u.kw);
  return { lo: u.off, hi: u.off + (images - 1) * u.sN + (channels - 1) * u.sC + (u.h - 1) * u.sH + (u.w - 1) * u.sW + 1 };
}

/** Whether an unfolding packs by window rows (packUnfoldedRows): no padding, window rows of 4 or more adjacent floats. */
const byRows = (u: Unfolding): boolean => u.padH === 0 && u.padW === 0 && u.sW === 1 && u.dilationW === 1 && u.kw >= 4;

/** UnfoldFn's arguments from src on, for an input copied to byte `at`. */
const unfoldingArgs = (u: Unfolding, at: number): number[] =>
  [at, u.sN, u.sC, u.sH, u.sW, u.kh, u.kw, u.oh, u.ow, u.h, u.w, u.strideH, u.strideW, u.dilationH, u.dilationW, u.padH, u.padW];

/** The elements [lo, hi) read at off + sum of i_d * stride_d for i_d < count_d. */
function spanOf(off: number, dims: [count: number, stride: number][]): { lo: number; hi: number } {
  let lo = off, hi = off;
  for (const [count, stride] of dims) { const end = (count - 1) * stride; lo += Math.min(0, end); hi += Math.max(0, end); }
  return { lo, hi: hi + 1 };
}

/** The elements [lo, hi) an operand of rows x cols read at off + r * sr + c * sc occupies. */
const span = (off: number, rows: number, sr: number, cols: number, sc: number): { lo: number; hi: number } => spanOf(off, [[rows, sr], [cols, sc]]);

// Packing in JavaScript (operands spread wider than their elements; see makeGemm) is written for V8:
// k outer with one contiguous write stream, and the 4-row / 8-column blocks of the 4 x 8 kernels
// unrolled (twice as fast as the generic loops here).

/** Pack rows [0, m) x k [0, kb) of A into blocks of RB rows: dst[blk * kb * RB + kk * RB + r]; rows past m are zero. */
function packA(dst: Float32Array, at: number, src: Float32Array, off: number, sam: number, sak: number, m: number, mp: number, kb: number, RB: number): void {
  for (let i0 = 0; i0 < mp; i0 += RB) {
    const blk = at + i0 * kb, rows = Math.min(RB, m - i0);
    let s = off + i0 * sam, d = blk;
    if (RB === 4 && rows === 4) {
      const s1 = sam, s2 = 2 * sam, s3 = 3 * sam;
      for (let kk = 0; kk < kb; kk++, s += sak, d += 4) {
        dst[d] = src[s]; dst[d + 1] = src[s + s1]; dst[d + 2] = src[s + s2]; dst[d + 3] = src[s + s3];
      }
      continue;
    }
    if (rows < RB) dst.fill(0, blk, blk + kb * RB);
    for (let kk = 0; kk < kb; kk++, s += sak, d += RB) {
      for (let r = 0; r < rows; r++) dst[d + r] = src[s + r * sam];
    }
  }
}

/** Pack k [0, kb) x columns [0, n) of B into panels of NR columns: dst[p * kb * NR + kk * NR + c]; columns past n are zero. */
function packB(dst: Float32Array, at: number, src: Float32Array, off: number, sbk: number, sbn: number, n: number, np: number, kb: number, NR: number): void {
  for (let p = 0; p < np; p++) {
    const panel = at + p * kb * NR, j0 = p * NR, w = Math.min(NR, n - j0);
    let s = off + j0 * sbn, d = panel;
    if (NR === 8 && w === 8) {
      const s1 = sbn, s2 = 2 * sbn, s3 = 3 * sbn, s4 = 4 * sbn, s5 = 5 * sbn, s6 = 6 * sbn, s7 = 7 * sbn;
      for (let kk = 0; kk < kb; kk++, s += sbk, d += 8) {
        dst[d] = src[s]; dst[d + 1] = src[s + s1]; dst[d + 2] = src[s + s2]; dst[d + 3] = src[s + s3];
        dst[d + 4] = src[s + s4]; dst[d + 5] = src[s + s5]; dst[d + 6] = src[s + s6]; dst[d + 7] = src[s + s7];
      }
      continue;
    }
    if (w < NR) dst.fill(0, panel, panel + kb * NR);
    for (let kk = 0; kk < kb; kk++, s += sbk, d += NR) {
      for (let c = 0; c < w; c++) dst[d + c] = src[s + c * sbn];
    }
  }
}

/** The relaxed-SIMD kernel where the engine validates it, else the plain SIMD one. */
export function bestShape(): KernelShape {
  return kernelSupported(RELAXED) ? RELAXED : PLAIN;
}

export const gemm: Gemm | null = makeGemm();
