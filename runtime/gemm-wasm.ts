// A float32 matrix product in WebAssembly SIMD for the CPU device: C = A @ B on packed row-major
// operands, in register blocks of a few rows x a few f32x4 columns (see makeGemm). Generated matmul kernels
// call `gemm` and apply their epilogue in JavaScript. The module is a few hundred bytes, encoded here
// (no toolchain); where WebAssembly SIMD is missing, `gemm` is null and the JavaScript loops run.

const I32 = 0x7f, V128 = 0x7b;
const op = {
  block: 0x02, loop: 0x03, if: 0x04, else: 0x05, br: 0x0c, brIf: 0x0d, end: 0x0b,
  get: 0x20, set: 0x21, tee: 0x22,
  i32Const: 0x41, i32Add: 0x6a, i32Mul: 0x6c, i32LtU: 0x49, i32Eqz: 0x45,
  f32Load: 0x2a, simd: 0xfd,
} as const;
// SIMD opcodes (after 0xfd, LEB128): v128.load 0, v128.store 11, v128.const 12, f32x4.splat 19, f32x4.add 228, f32x4.mul 230
const simd = { load: [0x00], store: [0x0b], const: [0x0c], splat: [0x13], add: [0xe4, 0x01], mul: [0xe6, 0x01] } as const;

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

/** The module: `gemm(a, b, c, M, N, K)` with byte pointers; M % RB == 0, N % (4 * CB) == 0. */
function gemmModule(RB: number, CB: number): Uint8Array<ArrayBuffer> {
  // params 0..7: a b c M N K lda accumulate; i32 locals 8.. ; v128 locals after
  const [A, B, C, M, N, K, LDA, ACCUM] = [0, 1, 2, 3, 4, 5, 6, 7];
  const i = 8, j = 9, k = 10, pa = Array.from({ length: RB }, (_, r) => 11 + r), pb = 11 + RB, rowBytes = 12 + RB, kBytes = 13 + RB, pc = 14 + RB;
  const nI32 = 7 + RB;
  const v0 = 8 + nI32;
  const acc = (r: number, c: number) => v0 + r * CB + c;
  const av = Array.from({ length: RB }, (_, r) => v0 + RB * CB + r), bv = Array.from({ length: CB }, (_, c) => v0 + RB * CB + RB + c);
  const R = Array.from({ length: RB }, (_, r) => r), Cc = Array.from({ length: CB }, (_, c) => c);
  const code: number[] = [];
  const e = (...xs: number[]) => code.push(...xs);
  const get = (l: number) => e(op.get, l), set = (l: number) => e(op.set, l);
  const i32 = (v: number) => e(op.i32Const, ...sleb(v));
  const memarg = (offset: number, align: number) => [align, ...uleb(offset)];
  // rowBytes = N * 4, kBytes = lda * 4 (a's row stride: k may be one block of a longer row)
  get(N); i32(4); e(op.i32Mul); set(rowBytes);
  get(LDA); i32(4); e(op.i32Mul); set(kBytes);
  // Column panels outside, row blocks inside: a panel of b (k x 4*CB floats) stays in cache while
  // every row block of a streams past it.
  i32(0); set(j);
  e(op.block, 0x40, op.loop, 0x40);
  get(j); get(N); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
  i32(0); set(i);
  e(op.block, 0x40, op.loop, 0x40);
  get(i); get(M); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
  // pc = C + (i * N + j) * 4; accumulators start at zero, or at C when accumulating over k blocks
  get(C); get(i); get(rowBytes); e(op.i32Mul, op.i32Add); get(j); i32(4); e(op.i32Mul, op.i32Add); set(pc);
  get(ACCUM); e(op.if, 0x40);
  const rowAddress = (r: number) => { get(pc); if (r) { get(rowBytes); i32(r); e(op.i32Mul, op.i32Add); } };
  for (const r of R) for (const c of Cc) { rowAddress(r); e(op.simd, ...simd.load, ...memarg(16 * c, 4)); set(acc(r, c)); }
  e(op.else);
  for (const r of R) for (const c of Cc) { e(op.simd, ...simd.const, ...new Array(16).fill(0)); set(acc(r, c)); }
  e(op.end);
  // pa[r] = A + (i + r) * K * 4; pb = B + j * 4
  for (const r of R) { get(A); get(i); i32(r); e(op.i32Add); get(kBytes); e(op.i32Mul, op.i32Add); set(pa[r]); }
  get(B); get(j); i32(4); e(op.i32Mul, op.i32Add); set(pb);
  i32(0); set(k);
  e(op.block, 0x40, op.loop, 0x40);
  get(k); get(K); e(op.i32LtU, op.i32Eqz, op.brIf, 1);
  for (const r of R) {
    get(pa[r]); e(op.f32Load, ...memarg(0, 2), op.simd, ...simd.splat); set(av[r]);
    get(pa[r]); i32(4); e(op.i32Add); set(pa[r]);
  }
  for (const c of Cc) { get(pb); e(op.simd, ...simd.load, ...memarg(16 * c, 4)); set(bv[c]); }
  get(pb); get(rowBytes); e(op.i32Add); set(pb);
  for (const r of R) {
    for (const c of Cc) {
      get(acc(r, c)); get(av[r]); get(bv[c]); e(op.simd, ...simd.mul, op.simd, ...simd.add); set(acc(r, c));
    }
  }
  get(k); i32(1); e(op.i32Add); set(k);
  e(op.br, 0, op.end, op.end);
  // store: pc + r * N * 4 + 16c
  for (const r of R) {
    for (const c of Cc) {
      rowAddress(r);
      get(acc(r, c)); e(op.simd, ...simd.store, ...memarg(16 * c, 4));
    }
  }
  get(i); i32(RB); e(op.i32Add); set(i);
  e(op.br, 0, op.end, op.end);
  get(j); i32(4 * CB); e(op.i32Add); set(j);
  e(op.br, 0, op.end, op.end);
  e(op.end);
  const locals = vec([[...uleb(nI32), I32], [...uleb(RB * CB + RB + CB), V128]]);
  const body = [...locals, ...code];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec(new Array(8).fill([I32])), 0x00]])),
    ...section(3, vec([[0x00]])),
    ...section(5, vec([[0x00, 0x01]])),
    ...section(7, vec([[...str('gemm'), 0x00, 0x00], [...str('mem'), 0x02, 0x00]])),
    ...section(10, vec([[...uleb(body.length), ...body]])),
  ]);
}

/** An operand as the generated kernel sees it: a typed array, an offset and strides (elements). */
export type Gemm = (a: Float32Array, offA: number, sam: number, sak: number, b: Float32Array, offB: number, sbk: number, sbn: number, m: number, n: number, k: number) => { c: Float32Array; ldc: number };

/**
 * A gemm with register blocks of RB rows x 4*CB columns over blocks of KC values of k. 2 x 16
 * (8 accumulators + 6 operands, within x86-64's 16 vector registers) with k blocks of 128 measured
 * fastest here: 34-39 GFLOP/s on the MLP's shapes, single-threaded.
 */
export function makeGemm(RB = 2, CB = 4, KC = 128): Gemm | null {
  if (typeof WebAssembly === 'undefined') return null;
  let instance: WebAssembly.Instance;
  try {
    instance = new WebAssembly.Instance(new WebAssembly.Module(gemmModule(RB, CB)));
  } catch {
    return null; // no SIMD: the JavaScript kernels run
  }
  const mem = instance.exports.mem as WebAssembly.Memory;
  const run = instance.exports.gemm as (a: number, b: number, c: number, m: number, n: number, k: number, lda: number, accumulate: number) => void;
  let heap = new Float32Array(mem.buffer);
  return (a, offA, sam, sak, b, offB, sbk, sbn, m, n, k) => {
    const mp = Math.ceil(m / RB) * RB, np = Math.ceil(n / (4 * CB)) * 4 * CB;
    const need = mp * k + k * np + mp * np;
    if (need > heap.length) {
      mem.grow(Math.ceil((need * 4 - mem.buffer.byteLength) / 65536));
      heap = new Float32Array(mem.buffer);
    }
    const pa = 0, pb = mp * k, pc = pb + k * np;
    // Pack A as [mp, k] and B as [k, np] row-major, zero-padded.
    pack(heap, pa, k, a, offA, sam, sak, m, k);
    heap.fill(0, pa + m * k, pa + mp * k);
    pack(heap, pb, np, b, offB, sbk, sbn, k, n);
    if (np > n) for (let kk = 0; kk < k; kk++) heap.fill(0, pb + kk * np + n, pb + (kk + 1) * np);
    // Blocks of k keep a's rows and b's panel in the first-level cache; later blocks accumulate into c.
    for (let k0 = 0; k0 < k; k0 += KC) run((pa + k0) * 4, (pb + k0 * np) * 4, pc * 4, mp, np, Math.min(KC, k - k0), k, k0 > 0 ? 1 : 0);
    return { c: heap.subarray(pc, pc + mp * np), ldc: np };
  };
}

/** dst[at + r * ld + c] = src[off + r * s0 + c * s1] for a rows x cols block. */
function pack(dst: Float32Array, at: number, ld: number, src: Float32Array, off: number, s0: number, s1: number, rows: number, cols: number): void {
  if (s1 === 1) {
    for (let r = 0; r < rows; r++) dst.set(src.subarray(off + r * s0, off + r * s0 + cols), at + r * ld);
  } else if (s0 === 1) {
    // A transposed view (a weight's .T, a gradient's .T): transpose in cache-sized tiles.
    const T = 32;
    for (let c0 = 0; c0 < cols; c0 += T) {
      for (let r0 = 0; r0 < rows; r0 += T) {
        const c1 = Math.min(c0 + T, cols), r1 = Math.min(r0 + T, rows);
        for (let c = c0; c < c1; c++) {
          const from = off + c * s1;
          for (let r = r0; r < r1; r++) dst[at + r * ld + c] = src[from + r];
        }
      }
    }
  } else {
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) dst[at + r * ld + c] = src[off + r * s0 + c * s1];
  }
}

export const gemm: Gemm | null = makeGemm();
