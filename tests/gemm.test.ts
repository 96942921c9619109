// The CPU's WebAssembly SIMD gemm (runtime/gemm-wasm.ts) and its use by generated matmul kernels.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { gemm } from '../runtime/gemm-wasm.ts';
import { setJsKernelEnv } from '../compiler/codegen/js.ts';

function reference(a: Float32Array, offA: number, sam: number, sak: number, b: Float32Array, offB: number, sbk: number, sbn: number, m: number, n: number, k: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let kk = 0; kk < k; kk++) s += a[offA + i * sam + kk * sak] * b[offB + kk * sbk + j * sbn];
    c[i * n + j] = s;
  }
  return c;
}

describe('WebAssembly gemm', () => {
  it('is available in Node 20 (WebAssembly SIMD)', () => {
    expect(gemm).not.toBeNull();
  });

  const cases: [string, number, number, number, boolean, boolean][] = [
    ['odd sizes', 7, 19, 5, false, false],
    ['transposed a', 13, 33, 17, true, false],
    ['transposed b', 9, 40, 31, false, true],
    ['both transposed, one row', 1, 17, 64, true, true],
    ['MLP layer', 128, 512, 784, false, true],
  ];
  for (const [name, m, n, k, ta, tb] of cases) {
    it(`matches a float64 reference: ${name} (${m}x${k} @ ${k}x${n})`, () => {
      const a = Float32Array.from({ length: 3 + m * k }, (_, i) => Math.sin(i * 1.3));
      const b = Float32Array.from({ length: 5 + k * n }, (_, i) => Math.cos(i * 0.7));
      const [sam, sak] = ta ? [1, m] : [k, 1];
      const [sbk, sbn] = tb ? [1, k] : [n, 1];
      const want = reference(a, 3, sam, sak, b, 5, sbk, sbn, m, n, k);
      const { c, ldc } = gemm!(a, 3, sam, sak, b, 5, sbk, sbn, m, n, k);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
        const w = want[i * n + j];
        expect(Math.abs(c[i * ldc + j] - w), `c[${i}][${j}]`).toBeLessThanOrEqual(1e-5 * Math.sqrt(k) * (1 + Math.abs(w)));
      }
    });
  }

  // Operands are copied raw into WebAssembly memory and packed there, except one spread over more than
  // twice its elements (every third row here), which is packed in JavaScript; k past one block of 256,
  // a broadcast row (stride 0) and a split over row blocks (m > n) take the other paths of the packers.
  const strided: [string, number, number, number, [number, number], [number, number], boolean][] = [
    ['every third row of a (packed in JavaScript)', 10, 12, 9, [27, 1], [12, 1], false],
    ['k over two blocks, split over threads', 37, 21, 300, [300, 1], [1, 300], true],
    ['a broadcast row (stride 0)', 6, 9, 11, [0, 1], [9, 1], false],
    ['rows split over threads, transposed a', 300, 20, 40, [1, 300], [20, 1], true],
  ];
  for (const [name, m, n, k, [sam, sak], [sbk, sbn], split] of strided) {
    it(`matches a float64 reference: ${name} (${m}x${k} @ ${k}x${n})`, () => {
      const a = Float32Array.from({ length: 2 + (m - 1) * sam + (k - 1) * sak + 1 }, (_, i) => Math.sin(i * 0.9));
      const b = Float32Array.from({ length: 1 + (k - 1) * sbk + (n - 1) * sbn + 1 }, (_, i) => Math.cos(i * 0.3));
      const want = reference(a, 2, sam, sak, b, 1, sbk, sbn, m, n, k);
      const { c, ldc } = gemm!(a, 2, sam, sak, b, 1, sbk, sbn, m, n, k, split);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
        const w = want[i * n + j];
        expect(Math.abs(c[i * ldc + j] - w), `c[${i}][${j}]`).toBeLessThanOrEqual(1e-5 * Math.sqrt(k) * (1 + Math.abs(w)));
      }
    });
  }

  it('generated kernels call it for big products and keep their epilogue', async () => {
    kiln.manualSeed(1);
    const x = kiln.randn([64, 96]), w = kiln.randn([80, 96]), bias = kiln.randn([80]);
    const step = kiln.compile((t: kiln.Tensor) => t.matmul(w.T).add(bias).relu());
    const l = await step.lower(x);
    expect(l.kernels).toHaveLength(1);
    expect(l.kernels[0].source).toContain('env.gemm');
    const got = await (await step(x)).data();
    const want = x.matmul(w.T).add(bias).relu().dataSync();
    want.forEach((v, i) => expect(Math.abs(got[i] - v)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(v))));
  });

  it('without a gemm (no WebAssembly SIMD) big products run as generated JavaScript loops, with the same results', async () => {
    kiln.manualSeed(2);
    const x = kiln.randn([67, 90]), w = kiln.randn([90, 70]);
    const want = x.matmul(w).relu().dataSync();
    setJsKernelEnv({ gemm: null, conv: null, parallel: null });
    try {
      const step = kiln.compile((t: kiln.Tensor) => t.matmul(w).relu());
      const l = await step.lower(x);
      expect(l.kernels[0].source).not.toContain('env.gemm');
      const got = await (await step(x)).data();
      want.forEach((v, i) => expect(Math.abs(got[i] - v)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(v))));
    } finally {
      setJsKernelEnv({ gemm, conv: null, parallel: null });
    }
  });
});
