// The WGSL codegen and WebGPU backend against the CPU backend (the JavaScript codegen of the same
// kernel specs): bit-for-bit for exact ops, within 1e-5 relative for transcendental ops, reductions
// and matmul. Skipped only where no adapter exists and KILN_REQUIRE_WEBGPU is not set.

import { describe, expect, it } from 'vitest';
import { testDevices } from './devices.ts';
import type { DType, TypedArray } from '../ir/dtype.ts';
import type { Expr, KernelSpec } from '../ir/kernel.ts';
import { isFloatOnly, primitivesOfKind, type AVal, type PrimAttrs, type Primitive } from '../ir/primitives.ts';
import { contiguousStrides } from '../ir/shape.ts';
import { contiguousView, permuteView, expandView, sliceView, type View } from '../ir/view.ts';
import { copyKernel, lowerPrimitive, type LowerInput } from '../compiler/lower.ts';
import { wgslSource, type WgslOptions } from '../compiler/codegen/wgsl.ts';
import { cpuBackend } from '../runtime/cpu.ts';
import { setGridCap, setReduceStrategy, setShaderTransform, webgpuBackend, sync } from '../runtime/webgpu/backend.ts';
import type { Storage } from '../runtime/device.ts';
import * as kiln from '../index.ts';

const hasWebGPU = (await testDevices()).includes('webgpu');

// ---- helpers --------------------------------------------------------------------------------------

let seed = 12345;
function rnd(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
}
const randF = (n: number, lo = -2, hi = 2): Float32Array => Float32Array.from({ length: n }, () => lo + (hi - lo) * rnd());
const randI = (n: number, lo: number, hi: number): Int32Array => Int32Array.from({ length: n }, () => lo + Math.floor((hi - lo) * rnd()));
const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

interface Arg { data: TypedArray; offset?: number }
interface Outcome { cpu: TypedArray; gpu: TypedArray }

/** Runs `specs` on both backends over the same argument data (the last `outputs` args are outputs). */
async function runBoth(specs: KernelSpec[], args: Arg[], opts: { params?: number[]; read?: number[] } = {}): Promise<Outcome[]> {
  const cpuS: Storage[] = args.map((a) => cpuBackend.upload(a.data.slice()));
  const gpuS: Storage[] = args.map((a) => webgpuBackend.upload(a.data.slice()));
  cpuBackend.run(specs, cpuS.map((s, i) => ({ storage: s, offset: args[i].offset ?? 0 })), opts.params);
  webgpuBackend.run(specs, gpuS.map((s, i) => ({ storage: s, offset: args[i].offset ?? 0 })), opts.params);
  const which = opts.read ?? [args.length - 1];
  const out: Outcome[] = [];
  for (const i of which) {
    out.push({ cpu: await cpuBackend.read(cpuS[i], 0, cpuS[i].size), gpu: await webgpuBackend.read(gpuS[i], 0, gpuS[i].size) });
  }
  return out;
}

function expectExact(o: Outcome, label: string): void {
  expect(o.gpu.constructor).toBe(o.cpu.constructor);
  expect(o.gpu.length).toBe(o.cpu.length);
  for (let i = 0; i < o.cpu.length; i++) {
    const a = o.cpu[i], b = o.gpu[i];
    if (Number.isNaN(a) && Number.isNaN(b)) continue;
    if (a !== b) throw new Error(`${label}: element ${i}: cpu ${a}, webgpu ${b}`);
  }
}

function expectClose(o: Outcome, label: string, rtol = 1e-5, atol = 1e-6): void {
  expect(o.gpu.constructor).toBe(o.cpu.constructor);
  expect(o.gpu.length).toBe(o.cpu.length);
  for (let i = 0; i < o.cpu.length; i++) {
    const a = o.cpu[i], b = o.gpu[i];
    if (Number.isNaN(a) || Number.isNaN(b)) {
      if (Number.isNaN(a) && Number.isNaN(b)) continue;
      throw new Error(`${label}: element ${i}: cpu ${a}, webgpu ${b}`);
    }
    if (a === b) continue;
    if (!(Math.abs(a - b) <= atol + rtol * Math.abs(a))) throw new Error(`${label}: element ${i}: cpu ${a}, webgpu ${b} (rel ${Math.abs(a - b) / Math.abs(a)})`);
  }
}

const inp = (shape: number[], dtype: DType = 'float32', view?: View): LowerInput => ({ view: view ?? contiguousView(shape), dtype });

function lowerOne<P extends Primitive>(prim: P, attrs: PrimAttrs[P], inputs: LowerInput[], out: AVal): KernelSpec[] {
  return lowerPrimitive(prim, attrs, inputs, out);
}

async function elementwise(prim: Primitive, datas: TypedArray[], dtypes: DType[], outDtype: DType, shape: number[]): Promise<Outcome> {
  const specs = lowerOne(prim, {} as PrimAttrs[Primitive], dtypes.map((d) => inp(shape, d)), { shape, dtype: outDtype });
  const outArr = outDtype === 'float32' ? new Float32Array(numel(shape)) : outDtype === 'int32' ? new Int32Array(numel(shape)) : new Uint8Array(numel(shape));
  return (await runBoth(specs, [...datas.map((d) => ({ data: d })), { data: outArr }]))[0];
}

/** Float data with the interesting values mixed in. */
function specialF(n: number): Float32Array {
  const x = randF(n, -3, 3);
  const special = [0, -0, 1, -1, NaN, Infinity, -Infinity, 0.5, -2, 2, 3, 1e-30, 40, -40, 100];
  special.forEach((v, i) => { if (i < n) x[i * 3 % n] = v; });
  return x;
}

// ---- tests ----------------------------------------------------------------------------------------

describe.runIf(hasWebGPU)('wgsl codegen on webgpu vs cpu', () => {
  const shape = [7, 13];
  const n = numel(shape);

  describe('map kernels', () => {
    it('exact binary ops (add, sub, mul, maximum, minimum) on floats with NaN/inf', async () => {
      const a = specialF(n), b = specialF(n).reverse();
      for (const op of ['add', 'sub', 'mul', 'maximum', 'minimum'] as const) {
        expectExact(await elementwise(op, [a, b], ['float32', 'float32'], 'float32', shape), op);
      }
    });

    it('exact comparisons, with NaN, on float, int and mixed operands', async () => {
      const a = specialF(n), b = specialF(n).reverse();
      b[5] = a[5]; b[6] = a[6];
      const ia = randI(n, -3, 3), ib = randI(n, -3, 3);
      for (const op of primitivesOfKind('compare')) {
        expectExact(await elementwise(op, [a, b], ['float32', 'float32'], 'bool', shape), `${op} f32`);
        expectExact(await elementwise(op, [ia, ib], ['int32', 'int32'], 'bool', shape), `${op} i32`);
        expectExact(await elementwise(op, [ia, b], ['int32', 'float32'], 'bool', shape), `${op} mixed`);
      }
    });

    it('exact integer and bool arithmetic', async () => {
      const ia = randI(n, -1000, 1000), ib = randI(n, -1000, 1000);
      for (const op of ['add', 'sub', 'mul', 'maximum', 'minimum'] as const) {
        expectExact(await elementwise(op, [ia, ib], ['int32', 'int32'], 'int32', shape), `${op} i32`);
      }
      const ba = Uint8Array.from(randI(n, 0, 2)), bb = Uint8Array.from(randI(n, 0, 2));
      expectExact(await elementwise('add', [ba, bb], ['bool', 'bool'], 'int32', shape), 'add bool');
      expectExact(await elementwise('add', [ia, randF(n)], ['int32', 'float32'], 'float32', shape), 'add int+float');
      expectExact(await elementwise('pow', [randI(n, -5, 6), randI(n, 0, 6)], ['int32', 'int32'], 'int32', shape), 'pow i32');
    });

    it('exact unary ops (neg, abs, sign, relu, copy) on floats and ints', async () => {
      const a = specialF(n), ia = randI(n, -5, 5);
      for (const op of primitivesOfKind('unary').filter((p) => !isFloatOnly(p))) {
        expectExact(await elementwise(op, [a], ['float32'], 'float32', shape), op);
        expectExact(await elementwise(op, [ia], ['int32'], 'int32', shape), `${op} i32`);
      }
    });

    it('transcendental ops within 1e-5 relative', async () => {
      const a = specialF(n);
      for (const op of primitivesOfKind('unary').filter(isFloatOnly)) {
        expectClose(await elementwise(op, [a], ['float32'], 'float32', shape), op);
      }
      const small = Float32Array.from({ length: n }, (_, i) => (i - n / 2) * 1e-4);
      expectClose(await elementwise('tanh', [small], ['float32'], 'float32', shape), 'tanh near 0');
      expectClose(await elementwise('exp', [randI(n, -5, 5)], ['int32'], 'float32', shape), 'exp of int');
    });

    it('div and pow (negative bases with integral exponents as PyTorch: (-2)^3 = -8)', async () => {
      const a = specialF(n), b = specialF(n).reverse();
      expectClose(await elementwise('div', [a, b], ['float32', 'float32'], 'float32', shape), 'div');
      const base = Float32Array.from({ length: n }, (_, i) => [-2, -1.5, 0, 2.5, -3, 1, -0.5][i % 7]);
      const expo = Float32Array.from({ length: n }, (_, i) => [3, 2, -1, 0.5, 4, -3, 1.5, 0, 7, 2.25, -2][i % 11]);
      const r = await elementwise('pow', [base, expo], ['float32', 'float32'], 'float32', shape);
      expectClose(r, 'pow');
      const idx = Array.from({ length: n }, (_, i) => i).find((i) => base[i] === -2 && expo[i] === 3)!;
      expect(r.gpu[idx]).toBe(-8);
      expectClose(await elementwise('pow', [a, b], ['float32', 'float32'], 'float32', shape), 'pow specials');
    });

    it('where and casts', async () => {
      const c = Uint8Array.from(randI(n, 0, 2)), a = specialF(n), b = randF(n);
      const specs = lowerOne('where', {}, [inp(shape, 'bool'), inp(shape), inp(shape)], { shape, dtype: 'float32' });
      expectExact((await runBoth(specs, [{ data: c }, { data: a }, { data: b }, { data: new Float32Array(n) }]))[0], 'where');
      const f = Float32Array.from(randF(n, -10, 10));
      f[0] = NaN; f[1] = -0; f[2] = 0;
      for (const to of ['int32', 'bool', 'float32'] as const) {
        const out = to === 'float32' ? new Float32Array(n) : to === 'int32' ? new Int32Array(n) : new Uint8Array(n);
        for (const [data, from] of [[f, 'float32'], [randI(n, -3, 3), 'int32'], [Uint8Array.from(randI(n, 0, 2)), 'bool']] as const) {
          if (from === 'float32' && to === 'int32') data[0] = 1.5; // NaN -> int is platform-defined
          const specs2 = lowerOne('cast', { dtype: to }, [inp(shape, from)], { shape, dtype: to });
          expectExact((await runBoth(specs2, [{ data }, { data: out.slice() }]))[0], `cast ${from} -> ${to}`);
          if (from === 'float32' && to === 'int32') data[0] = NaN;
        }
      }
    });

    it('permuted, expanded and sliced input views at argument offsets', async () => {
      // x: a [13, 7] buffer region at offset 5, read transposed; y: a row [13] broadcast over 7 rows
      const x = randF(5 + n), y = randF(3 + 13 * 2);
      const xv = permuteView(contiguousView([13, 7]), [1, 0]);
      const yv = sliceView(expandView(contiguousView([1, 26]), [7, 26]), [0, 1], [1, 2], [7, 13]);
      const specs = lowerOne('mul', {}, [inp(shape, 'float32', xv), inp(shape, 'float32', yv)], { shape, dtype: 'float32' });
      expectExact((await runBoth(specs, [{ data: x, offset: 5 }, { data: y, offset: 3 }, { data: new Float32Array(n) }]))[0], 'views');
    });

    it('writes through a non-contiguous output view at an offset (in-place copy into a view)', async () => {
      const src = randF(n);
      const dstBuf = randF(4 + 13 * 7 * 2);
      const dst = sliceView(permuteView(contiguousView([13, 14]), [1, 0]), [0, 0], [2, 1], [7, 13]);
      const spec = copyKernel(inp(shape), inp(shape, 'float32', dst));
      expectExact((await runBoth([spec], [{ data: src }, { data: dstBuf, offset: 4 }]))[0], 'copy into view');
      // pad: zero then write into a strided view of the output (two kernels)
      const padSpecs = lowerOne('pad', { starts: [1, 2], steps: [2, 1], shape: [16, 16] }, [inp(shape)], { shape: [16, 16], dtype: 'float32' });
      expectExact((await runBoth(padSpecs, [{ data: src }, { data: randF(256) }]))[0], 'pad');
    });

    it('in place: an input and the output bound to the same buffer', async () => {
      const data = randF(n);
      const specs = lowerOne('add', {}, [inp(shape), inp(shape)], { shape, dtype: 'float32' });
      const c = cpuBackend.upload(data.slice()), g = webgpuBackend.upload(data.slice());
      const other = randF(n);
      const co = cpuBackend.upload(other.slice()), go = webgpuBackend.upload(other.slice());
      cpuBackend.run(specs, [{ storage: c, offset: 0 }, { storage: co, offset: 0 }, { storage: c, offset: 0 }]);
      webgpuBackend.run(specs, [{ storage: g, offset: 0 }, { storage: go, offset: 0 }, { storage: g, offset: 0 }]);
      expectExact({ cpu: await cpuBackend.read(c, 0, n), gpu: await webgpuBackend.read(g, 0, n) }, 'x += y in place');
    });

    it('launch params (a host scalar) and constants', async () => {
      const x = randF(n);
      const load: Expr = { kind: 'load', arg: 0, view: contiguousView(shape), dtype: 'float32' };
      const expr: Expr = {
        kind: 'binary', op: 'add', dtype: 'float32',
        a: { kind: 'binary', op: 'mul', a: load, b: { kind: 'param', index: 0, dtype: 'float32' }, dtype: 'float32' },
        b: { kind: 'cast', x: { kind: 'param', index: 5, dtype: 'int32' }, dtype: 'float32' },
      };
      const spec: KernelSpec = { name: 'axpb', args: [{ dtype: 'float32', size: n }, { dtype: 'float32', size: n }], params: 6,
        kernel: { kind: 'map', shape, exprs: [expr], outputs: [{ arg: 1, view: contiguousView(shape), dtype: 'float32' }] } };
      expectExact((await runBoth([spec], [{ data: x }, { data: new Float32Array(n) }], { params: [0.25, 0, 0, 0, 0, 3] }))[0], 'params');
      const consts: Expr = { kind: 'binary', op: 'add', dtype: 'float32', a: { kind: 'const', value: 0.1, dtype: 'float32' }, b: { kind: 'const', value: -Infinity, dtype: 'float32' } };
      const spec2: KernelSpec = { ...spec, params: 0, kernel: { kind: 'map', shape, exprs: [{ kind: 'binary', op: 'maximum', a: consts, b: load, dtype: 'float32' }], outputs: [{ arg: 1, view: contiguousView(shape), dtype: 'float32' }] } };
      expectExact((await runBoth([spec2], [{ data: x }, { data: new Float32Array(n) }]))[0], 'constants');
    });

    it('expressions of constants only (exp(100), 1/0, (-2)^3) compile and overflow at run time as in js', async () => {
      const c = (value: number): Expr => ({ kind: 'const', value, dtype: 'float32' });
      const exprs: Expr[] = [
        { kind: 'unary', op: 'exp', x: c(100), dtype: 'float32' },
        { kind: 'binary', op: 'div', a: c(1), b: c(0), dtype: 'float32' },
        { kind: 'binary', op: 'pow', a: c(-2), b: c(3), dtype: 'float32' },
        { kind: 'unary', op: 'log', x: c(-1), dtype: 'float32' },
      ];
      const spec: KernelSpec = { name: 'consts_only', params: 0, args: exprs.map(() => ({ dtype: 'float32' as const, size: 2 })),
        kernel: { kind: 'map', shape: [2], exprs, outputs: exprs.map((_, i) => ({ arg: i, view: contiguousView([2]), dtype: 'float32' as const })) } };
      const outs = await runBoth([spec], exprs.map(() => ({ data: new Float32Array(2) })), { read: exprs.map((_, i) => i) });
      outs.forEach((o, i) => expectExact(o, `constant expression ${i}`));
    });

    it("counter-based random numbers equal the JS codegen's bit for bit", async () => {
      const shp = [3, 5, 7];
      const seed: Expr = { kind: 'load', arg: 0, view: { shape: shp, strides: [0, 0, 0], offset: 0 }, dtype: 'int32' };
      const rand = { kind: 'random', seed, dtype: 'float32' } as unknown as Expr;
      const out = permuteView(contiguousView([7, 5, 3]), [2, 1, 0]); // written transposed: the counter follows the iteration order
      const spec: KernelSpec = { name: 'random_3x5x7', params: 0, args: [{ dtype: 'int32', size: 1 }, { dtype: 'float32', size: 105 }],
        kernel: { kind: 'map', shape: shp, exprs: [rand], outputs: [{ arg: 1, view: out, dtype: 'float32' }] } };
      let cpuSupports = true;
      try { cpuBackend.run([spec], [{ storage: cpuBackend.upload(new Int32Array([1])), offset: 0 }, { storage: cpuBackend.alloc('float32', 105), offset: 0 }]); } catch { cpuSupports = false; }
      if (!cpuSupports) return; // the JS codegen of this checkout has no 'random' expression yet
      const r = (await runBoth([spec], [{ data: new Int32Array([-123456789]) }, { data: new Float32Array(105) }]))[0];
      expectExact(r, 'random');
      expect(new Set(r.gpu).size).toBeGreaterThan(100);
    });

    it('a map over more than 65535 workgroups uses a 2-D grid', async () => {
      const big = 65536 * 256 + 77;
      const specs = lowerOne('full', { shape: [big], value: 2.5, dtype: 'float32' }, [], { shape: [big], dtype: 'float32' });
      const k = wgslSource(specs[0], { maxWorkgroups: Infinity });
      expect(k.workgroups[1]).toBeGreaterThan(1);
      for (const cap of [Infinity, null]) {
        setGridCap(cap); // uncapped: a 2-D grid; by adapter: a capped grid whose invocations loop
        try {
          const out = webgpuBackend.alloc('float32', big);
          webgpuBackend.run(specs, [{ storage: out, offset: 0 }]);
          const all = await webgpuBackend.read(out, 0, big);
          expect(all.every((v) => v === 2.5), `cap ${cap}`).toBe(true);
        } finally {
          setGridCap(null);
        }
      }
    });
  });

  it('grid-stride loops (a tiny workgroup cap) give the same results for map, gather, scatterAdd and reduce', async () => {
    setGridCap(2);
    try {
      const shp = [37, 41];
      const a = randF(numel(shp)), b = randF(numel(shp));
      expectExact(await elementwise('mul', [a, b], ['float32', 'float32'], 'float32', shp), 'capped map');
      const g = lowerOne('gather', { axis: 1 }, [inp(shp), inp([37, 30], 'int32')], { shape: [37, 30], dtype: 'float32' });
      expectExact((await runBoth(g, [{ data: a }, { data: randI(37 * 30, 0, 41) }, { data: new Float32Array(37 * 30) }]))[0], 'capped gather');
      const sa = lowerOne('scatterAdd', { axis: 0, shape: [20, 41] }, [inp(shp, 'int32'), inp(shp)], { shape: [20, 41], dtype: 'float32' });
      expectExact((await runBoth(sa, [{ data: randI(numel(shp), 0, 20) }, { data: a }, { data: new Float32Array(20 * 41) }]))[0], 'capped scatterAdd');
      const r = lowerOne('sum', { axes: [1] }, [inp([3000, 5])], { shape: [3000, 1], dtype: 'float32' });
      expectClose((await runBoth(r, [{ data: randF(15000) }, { data: new Float32Array(3000) }]))[0], 'capped serial reduce');
    } finally {
      setGridCap(null);
    }
  });

  describe('reduce kernels', () => {
    const reduce = async (op: 'sum' | 'max' | 'argmax', shp: number[], axes: number[], data: TypedArray, dtype: DType = 'float32') => {
      const outShape = shp.map((d, i) => (axes.includes(i) ? 1 : d));
      const outDtype: DType = op === 'argmax' ? 'int32' : op === 'sum' && dtype !== 'float32' ? 'int32' : dtype;
      const specs = op === 'argmax' ? lowerOne('argmax', { axes }, [inp(shp, dtype)], { shape: outShape, dtype: outDtype })
        : lowerOne(op, { axes }, [inp(shp, dtype)], { shape: outShape, dtype: outDtype });
      const out = outDtype === 'float32' ? new Float32Array(numel(outShape)) : new Int32Array(numel(outShape));
      return (await runBoth(specs, [{ data }, { data: out }]))[0];
    };

    it('sum over various axes (serial and workgroup-tree paths)', async () => {
      for (const [shp, axes] of [[[5, 7, 3], [1]], [[5, 7, 3], [0, 2]], [[5, 7, 3], [0, 1, 2]], [[4, 300], [1]], [[300, 3], [0]], [[2, 50, 40], [1, 2]], [[1, 9, 1], [1]]] as [number[], number[]][]) {
        expectClose(await reduce('sum', shp, axes, randF(numel(shp))), `sum ${shp} over ${axes}`, 1e-5, 1e-5);
      }
      expectExact(await reduce('sum', [6, 500], [1], randI(3000, -100, 100), 'int32'), 'int sum');
      expectExact(await reduce('sum', [6, 50], [1], Uint8Array.from(randI(300, 0, 2)), 'bool'), 'bool sum');
    });

    for (const strategy of ['serial', 'tree'] as const) {
      it(`forced ${strategy} strategy: sum, max and argmax (NaN, ties) agree with cpu`, async () => {
        setReduceStrategy(strategy);
        try {
          const x = Float32Array.from({ length: 5 * 300 }, () => Math.floor(rnd() * 7));
          x[2 * 300 + 17] = NaN; x[2 * 300 + 250] = NaN;
          expectClose(await reduce('sum', [5, 300], [1], randF(1500)), `${strategy} sum`, 1e-5, 1e-5);
          expectClose(await reduce('sum', [30, 7, 20], [0, 2], randF(4200)), `${strategy} sum over two axes`, 1e-5, 1e-5);
          expectExact(await reduce('max', [5, 300], [1], x), `${strategy} max`);
          expectExact(await reduce('argmax', [5, 300], [1], x), `${strategy} argmax`);
          expectExact(await reduce('argmax', [300, 5], [0], x), `${strategy} argmax axis 0`);
          expectExact(await reduce('sum', [4, 333], [1], randI(1332, -50, 50), 'int32'), `${strategy} int sum`);
          expectClose(await reduce('sum', [2, 100000], [1], randF(200000, 0, 1)), `${strategy} long sum`, 1e-5, 0);
          expectClose(await reduce('sum', [3, 5000, 7], [1], randF(105000, 0, 1)), `${strategy} long sum over a middle axis`, 1e-5, 0);
        } finally {
          setReduceStrategy(null);
        }
      });
    }

    it('a long reduction (100000 elements)', async () => {
      const x = randF(100000, 0, 1);
      expectClose(await reduce('sum', [100000], [0], x), 'sum of 100000', 1e-5, 0);
      expectExact(await reduce('max', [100000], [0], x), 'max of 100000');
      expectExact(await reduce('argmax', [100000], [0], x), 'argmax of 100000');
      expectClose(await reduce('sum', [3, 100000], [1], randF(300000, 0, 1)), 'sum of 3 x 100000', 1e-5, 0);
    });

    it('max and argmax propagate NaN and pick the first maximum', async () => {
      for (const shp of [[6, 10], [6, 1000]]) {
        const len = shp[1];
        const x = Float32Array.from({ length: numel(shp) }, (_, i) => Math.floor(rnd() * 5));
        x[2 * len + 3] = NaN; x[2 * len + len - 1] = NaN; // row 2: first NaN wins
        x[3 * len + 0] = -Infinity;
        for (let j = 0; j < len; j++) x[4 * len + j] = -Infinity; // row 4: all -inf -> 0
        x[5 * len + len - 1] = NaN; // row 5: a NaN at the end
        expectExact(await reduce('max', shp, [1], x), `max ${shp}`);
        expectExact(await reduce('argmax', shp, [1], x), `argmax ${shp}`);
        expectExact(await reduce('argmax', [shp[0], len], [0], x), `argmax axis 0 ${shp}`);
      }
      expectExact(await reduce('argmax', [6, 700], [1], randI(4200, -3, 3), 'int32'), 'argmax int');
      expectExact(await reduce('max', [6, 700], [1], randI(4200, -3, 3), 'int32'), 'max int');
    });

    it('a reduce with an epilogue that reads another argument (mean-like, fused)', async () => {
      const shp = [8, 129];
      const load: Expr = { kind: 'load', arg: 0, view: contiguousView(shp), dtype: 'float32' };
      const bias: Expr = { kind: 'load', arg: 1, view: { shape: [8, 1], strides: [1, 0], offset: 0 }, dtype: 'float32' };
      const epi: Expr = { kind: 'binary', op: 'add', a: { kind: 'binary', op: 'mul', a: { kind: 'acc', dtype: 'float32' }, b: { kind: 'const', value: 1 / 129, dtype: 'float32' }, dtype: 'float32' }, b: bias, dtype: 'float32' };
      const body: Expr = { kind: 'unary', op: 'exp', x: load, dtype: 'float32' };
      const spec: KernelSpec = { name: 'mean_exp', args: [{ dtype: 'float32', size: 0 }, { dtype: 'float32', size: 0 }, { dtype: 'float32', size: 8 }], params: 0,
        kernel: { kind: 'reduce', op: 'sum', inShape: shp, axes: [1], body, epilogue: epi, output: { arg: 2, view: contiguousView([8, 1]), dtype: 'float32' } } };
      expectClose((await runBoth([spec], [{ data: randF(8 * 129) }, { data: randF(8) }, { data: new Float32Array(8) }]))[0], 'fused reduce');
    });
  });

  describe('matmul kernels', () => {
    const mm = async (batch: number[], m: number, k: number, n: number, aView?: View, bView?: View, dtype: DType = 'float32') => {
      const a = aView ?? contiguousView([...batch, m, k]);
      const b = bView ?? contiguousView([...batch, k, n]);
      const specs = lowerOne('matmul', {}, [inp([], dtype, a), inp([], dtype, b)], { shape: [...batch, m, n], dtype });
      const size = (v: View) => v.offset + v.shape.reduce((acc, d, i) => acc + (d - 1) * v.strides[i], 1);
      const gen = (len: number) => (dtype === 'float32' ? randF(len) : randI(len, -5, 5));
      const out = dtype === 'float32' ? new Float32Array(numel([...batch, m, n])) : new Int32Array(numel([...batch, m, n]));
      return (await runBoth(specs, [{ data: gen(size(a)) }, { data: gen(size(b)) }, { data: out }]))[0];
    };

    it('37x53 @ 53x29 (sizes that are not multiples of the tile)', async () => {
      expectClose(await mm([], 37, 53, 29), 'matmul 37x53x29', 1e-5, 1e-5);
    });
    it('batched [3, 5] x [5, 7] x [7, 4] and 1x1', async () => {
      expectClose(await mm([3, 5], 5, 7, 4), 'batched matmul', 1e-5, 1e-5);
      expectClose(await mm([], 1, 1, 1), 'matmul 1x1x1', 1e-5, 1e-6);
    });
    it('transposed operands (a.T @ b.T) and int matmul', async () => {
      const at = permuteView(contiguousView([20, 33]), [1, 0]);
      const bt = permuteView(contiguousView([17, 20]), [1, 0]);
      expectClose(await mm([], 33, 20, 17, at, bt), 'transposed matmul', 1e-5, 1e-5);
      expectExact(await mm([2], 9, 11, 6, undefined, undefined, 'int32'), 'int matmul');
    });
    it('vec4 path (k % 4 == 0, aligned): a @ b, a @ w.T, batched, and at aligned / unaligned offsets', async () => {
      const gen = (v: View) => randF(v.offset + v.shape.reduce((acc, d, i) => acc + (d - 1) * v.strides[i], 1));
      const run = async (batch: number[], m: number, k: number, n: number, a: View, b: View, offA: number, offB: number, label: string) => {
        const specs = lowerOne('matmul', {}, [inp([], 'float32', a), inp([], 'float32', b)], { shape: [...batch, m, n], dtype: 'float32' });
        const out = new Float32Array(numel([...batch, m, n]));
        const ga = gen(a), gb = gen(b);
        const pa = new Float32Array(offA + ga.length), pb = new Float32Array(offB + gb.length);
        pa.set(ga, offA); pb.set(gb, offB);
        expectClose((await runBoth(specs, [{ data: pa, offset: offA }, { data: pb, offset: offB }, { data: out }]))[0], label, 1e-5, 1e-5);
      };
      await run([], 13, 16, 12, contiguousView([13, 16]), contiguousView([16, 12]), 0, 0, 'vec4 NN');
      await run([], 13, 16, 10, contiguousView([13, 16]), permuteView(contiguousView([10, 16]), [1, 0]), 0, 0, 'vec4 NT (x @ w.T)');
      await run([3], 5, 8, 9, contiguousView([3, 5, 8]), permuteView(contiguousView([3, 9, 8]), [0, 2, 1]), 4, 8, 'vec4 batched NT at aligned offsets');
      await run([], 13, 16, 12, contiguousView([13, 16]), contiguousView([16, 12]), 2, 3, 'unaligned offsets (scalar path)');
      await run([], 12, 8, 16, permuteView(contiguousView([8, 12]), [1, 0]), contiguousView([8, 16]), 0, 4, 'vec4 TN (x.T @ g)');
      const aT = permuteView(sliceView(contiguousView([5, 8]), [0, 0], [1, 1], [5, 6]), [1, 0]); // [6, 5], strides [1, 8]
      await run([], 6, 5, 8, aT, contiguousView([5, 8]), 0, 0, 'vec4 TN, m and k not multiples of 4');
      const k = wgslSource(lowerOne('matmul', {}, [inp([4, 8]), inp([8, 4])], { shape: [4, 4], dtype: 'float32' })[0], { aligned: [true, true, true] });
      expect(k.code).toMatch(/array<vec4<f32>>/);
      // both operands of x @ w.T (b contiguous along k) and of g.T @ x (a contiguous along m) are vec4 loads
      const vec4Bindings = (code: string) => (code.match(/var<storage, read> b\d+: array<vec4<f32>>/g) ?? []).length;
      const nt = wgslSource(lowerOne('matmul', {}, [inp([12, 16]), inp([], 'float32', permuteView(contiguousView([20, 16]), [1, 0]))], { shape: [12, 20], dtype: 'float32' })[0], { aligned: [true, true, true] });
      expect(vec4Bindings(nt.code)).toBe(2);
      const tn = wgslSource(lowerOne('matmul', {}, [inp([], 'float32', permuteView(contiguousView([9, 12]), [1, 0])), inp([9, 20])], { shape: [12, 20], dtype: 'float32' })[0], { aligned: [true, true, true] });
      expect(vec4Bindings(tn.code)).toBe(2);
    });

    it('matmul with an epilogue (bias + relu)', async () => {
      const [m, k, n] = [10, 12, 9];
      const acc: Expr = { kind: 'acc', dtype: 'float32' };
      const bias: Expr = { kind: 'load', arg: 2, view: { shape: [m, n], strides: [0, 1], offset: 0 }, dtype: 'float32' };
      const epi: Expr = { kind: 'unary', op: 'relu', x: { kind: 'binary', op: 'add', a: acc, b: bias, dtype: 'float32' }, dtype: 'float32' };
      const spec: KernelSpec = { name: 'linear_relu', params: 0, args: [{ dtype: 'float32', size: 0 }, { dtype: 'float32', size: 0 }, { dtype: 'float32', size: 0 }, { dtype: 'float32', size: m * n }],
        kernel: { kind: 'matmul', batch: [], m, n, k, a: { kind: 'load', arg: 0, view: contiguousView([m, k]), dtype: 'float32' },
          b: { kind: 'load', arg: 1, view: contiguousView([k, n]), dtype: 'float32' }, epilogue: epi, output: { arg: 3, view: contiguousView([m, n]), dtype: 'float32' } } };
      expectClose((await runBoth([spec], [{ data: randF(m * k) }, { data: randF(k * n) }, { data: randF(n) }, { data: new Float32Array(m * n) }]))[0], 'linear relu', 1e-5, 1e-5);
    });
  });

  describe('gather and scatterAdd kernels', () => {
    it('gather along each axis, exact, from a permuted source', async () => {
      const src = randF(6 * 8);
      for (const axis of [0, 1]) {
        const idxShape = axis === 0 ? [5, 8] : [6, 4];
        const index = randI(numel(idxShape), 0, axis === 0 ? 6 : 8);
        const specs = lowerOne('gather', { axis }, [inp([6, 8]), inp(idxShape, 'int32')], { shape: idxShape, dtype: 'float32' });
        expectExact((await runBoth(specs, [{ data: src }, { data: index }, { data: new Float32Array(numel(idxShape)) }]))[0], `gather axis ${axis}`);
      }
      const pv = permuteView(contiguousView([8, 6]), [1, 0]);
      const specs = lowerOne('gather', { axis: 1 }, [inp([6, 8], 'float32', pv), inp([6, 3], 'int32')], { shape: [6, 3], dtype: 'float32' });
      expectExact((await runBoth(specs, [{ data: src }, { data: randI(18, 0, 8) }, { data: new Float32Array(18) }]))[0], 'gather permuted');
      const ispecs = lowerOne('gather', { axis: 1 }, [inp([6, 8], 'int32'), inp([6, 1], 'int32')], { shape: [6, 1], dtype: 'int32' });
      expectExact((await runBoth(ispecs, [{ data: randI(48, -9, 9) }, { data: randI(6, 0, 8) }, { data: new Int32Array(6) }]))[0], 'gather int (crossEntropy-like)');
    });

    it('scatterAdd with duplicate indices, bit-exact (deterministic order), into a zeroed output', async () => {
      for (const [axis, srcShape, outShape] of [[0, [9, 4], [5, 4]], [1, [3, 7], [3, 5]], [1, [2, 3], [4, 6]], [0, [40, 3], [4, 3]]] as [number, number[], number[]][]) {
        const index = randI(numel(srcShape), 0, outShape[axis]);
        const specs = lowerOne('scatterAdd', { axis, shape: outShape }, [inp(srcShape, 'int32'), inp(srcShape)], { shape: outShape, dtype: 'float32' });
        expectExact((await runBoth(specs, [{ data: index }, { data: randF(numel(srcShape)) }, { data: randF(numel(outShape)) }]))[0], `scatterAdd axis ${axis} ${srcShape} -> ${outShape}`);
      }
    });
  });

  describe('prepared launchers and writes (compiled steps)', () => {
    it('prepare(spec) launches like run() at any offsets', async () => {
      const specs = lowerOne('mul', {}, [inp([4, 5]), inp([4, 5])], { shape: [4, 5], dtype: 'float32' });
      const launch = webgpuBackend.prepare!(specs[0]);
      const a = randF(30), b = randF(20);
      const ga = webgpuBackend.upload(a), gb = webgpuBackend.upload(b);
      for (const off of [0, 3, 10]) {
        const out = webgpuBackend.alloc('float32', 20);
        launch([{ storage: ga, offset: off }, { storage: gb, offset: 0 }, { storage: out, offset: 0 }]);
        const got = await webgpuBackend.read(out, 0, 20);
        expect(Array.from(got)).toEqual(Array.from({ length: 20 }, (_, i) => Math.fround(a[off + i] * b[i])));
      }
    });

    it('write() does not change what already-queued launches read', async () => {
      const specs = lowerOne('add', {}, [inp([8]), inp([8], 'float32', { shape: [8], strides: [0], offset: 0 })], { shape: [8], dtype: 'float32' });
      const x = webgpuBackend.upload(Float32Array.from({ length: 8 }, (_, i) => i));
      const s = webgpuBackend.upload(new Float32Array([1]));
      const out1 = webgpuBackend.alloc('float32', 8), out2 = webgpuBackend.alloc('float32', 8);
      webgpuBackend.run(specs, [{ storage: x, offset: 0 }, { storage: s, offset: 0 }, { storage: out1, offset: 0 }]);
      webgpuBackend.write!(s, new Float32Array([100]));
      webgpuBackend.run(specs, [{ storage: x, offset: 0 }, { storage: s, offset: 0 }, { storage: out2, offset: 0 }]);
      expect(Array.from(await webgpuBackend.read(out1, 0, 8))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(Array.from(await webgpuBackend.read(out2, 0, 8))).toEqual([100, 101, 102, 103, 104, 105, 106, 107]);
    });
  });

  describe('errors and limits', () => {
    it('a shader that fails to compile rejects the next read with an Error naming the kernel and the WGSL error', async () => {
      const specs = lowerOne('neg', {}, [inp([3, 3])], { shape: [3, 3], dtype: 'float32' });
      specs[0] = { ...specs[0], name: 'deliberately_broken' };
      setShaderTransform((code) => code.replace('fn main(', 'fn main(oops: ,'));
      try {
        const x = webgpuBackend.upload(randF(9));
        const out = webgpuBackend.alloc('float32', 9);
        // the same structure under another name would hit the cache, so perturb the shape
        webgpuBackend.run(specs, [{ storage: x, offset: 0 }, { storage: out, offset: 0 }]);
        const err = await webgpuBackend.read(out, 0, 9).then(() => null, (e: unknown) => e);
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).toMatch(/deliberately_broken/);
        expect((err as Error).message).toMatch(/failed to compile/);
        // a later run of the broken kernel throws at once
        expect(() => webgpuBackend.run(specs, [{ storage: x, offset: 0 }, { storage: out, offset: 0 }])).toThrow(/deliberately_broken/);
      } finally {
        setShaderTransform(null);
      }
      // and the device still works afterwards
      await sync();
      const y = kiln.tensor([1, 2, 3], { device: 'webgpu' });
      expect(Array.from(await y.mul(2).data())).toEqual([2, 4, 6]);
    });

    it('a kernel with more storage buffers than the device allows throws naming the kernel and the limit', () => {
      const nargs = 20;
      const shp = [4];
      let e: Expr = { kind: 'load', arg: 0, view: contiguousView(shp), dtype: 'float32' };
      for (let i = 1; i < nargs - 1; i++) e = { kind: 'binary', op: 'add', a: e, b: { kind: 'load', arg: i, view: contiguousView(shp), dtype: 'float32' }, dtype: 'float32' };
      const spec: KernelSpec = { name: 'too_many_args', params: 0, args: Array.from({ length: nargs }, () => ({ dtype: 'float32' as const, size: 4 })),
        kernel: { kind: 'map', shape: shp, exprs: [e], outputs: [{ arg: nargs - 1, view: contiguousView(shp), dtype: 'float32' }] } };
      const opts: WgslOptions = { limits: { maxStorageBuffersPerShaderStage: 16 } };
      expect(() => wgslSource(spec, opts)).toThrow(/too_many_args.*20 storage buffers.*16.*maxStorageBuffersPerShaderStage/);
    });

    it('synchronous reads throw naming the async method', () => {
      const x = kiln.tensor([1, 2], { device: 'webgpu' });
      expect(() => x.dataSync()).toThrow(/await t\.data\(\)/);
      expect(() => webgpuBackend.readSync(webgpuBackend.alloc('float32', 1), 0, 1, 'item()')).toThrow(/await t\.item\(\)/);
    });
  });

  it('shader strides are constants but offsets are not: eager slices reuse one shader', async () => {
    const a = wgslSource(lowerOne('exp', {}, [inp([4])], { shape: [4], dtype: 'float32' })[0]);
    expect(a.code).toMatch(/U\.off/);
    expect(contiguousStrides([2, 3])).toEqual([3, 1]);
  });
});

describe('wgsl codegen (no device needed)', () => {
  it('generates a shader per kernel kind', () => {
    const kinds: KernelSpec[] = [
      ...lowerOne('add', {}, [inp([3]), inp([3])], { shape: [3], dtype: 'float32' }),
      ...lowerOne('sum', { axes: [1] }, [inp([3, 500])], { shape: [3, 1], dtype: 'float32' }),
      ...lowerOne('matmul', {}, [inp([3, 4]), inp([4, 5])], { shape: [3, 5], dtype: 'float32' }),
      ...lowerOne('gather', { axis: 0 }, [inp([3, 4]), inp([2, 4], 'int32')], { shape: [2, 4], dtype: 'float32' }),
      ...lowerOne('scatterAdd', { axis: 0, shape: [3, 4] }, [inp([2, 4], 'int32'), inp([2, 4])], { shape: [3, 4], dtype: 'float32' }),
    ];
    for (const s of kinds) {
      const k = wgslSource(s);
      expect(k.code).toContain('@compute');
      expect(k.bindings.length).toBeGreaterThan(0);
    }
    // the tree reduction uses workgroup memory and barriers
    expect(wgslSource(kinds[1]).code).toMatch(/var<workgroup>[\s\S]*workgroupBarrier/);
  });
  it('a shader carries only the helper functions it calls, and those they call', () => {
    const defined = (code: string) => [...code.matchAll(/^fn (k_\w+)\(/gm)].map((m) => m[1]).sort();
    expect(defined(wgslSource(lowerOne('matmul', {}, [inp([3, 4]), inp([4, 5])], { shape: [3, 5], dtype: 'float32' })[0]).code)).toEqual([]);
    // pow calls k_pow, which calls k_isnan, k_nan and k_inf
    expect(defined(wgslSource(lowerOne('pow', {}, [inp([3]), inp([3])], { shape: [3], dtype: 'float32' })[0]).code)).toEqual(['k_inf', 'k_isnan', 'k_nan', 'k_pow']);
    expect(defined(wgslSource(lowerOne('maximum', {}, [inp([3]), inp([3])], { shape: [3], dtype: 'float32' })[0]).code)).toEqual(['k_isnan', 'k_max', 'k_nan']);
  });
  it('a convolution runs in subgroup rounds where convLanes asks and the subgroups allow, else in workgroup-memory tiles', () => {
    // x [2, 1, 3, 9, 9] (grouped layout), w [1, 10, 3, 3, 3], stride 2, padding 1: out [2, 1, 10, 5, 5]
    const attrs = { stride: [2, 2], padLo: [1, 1], padHi: [1, 1], dilation: [1, 1], lhsDilation: [1, 1], flip: false, outPerm: [0, 1, 2, 3, 4] };
    const [spec] = lowerOne('conv', attrs, [inp([2, 1, 3, 9, 9]), inp([1, 10, 3, 3, 3])], { shape: [2, 1, 10, 5, 5], dtype: 'float32' });
    const lanes = wgslSource(spec, { convLanes: 4, limits: { subgroupMinSize: 4 } });
    expect(lanes.code).toMatch(/^enable subgroups;$/m);
    expect(lanes.code).toContain('@workgroup_size(4, 1)');
    expect(lanes.code).not.toContain('var<workgroup>');
    // 8 output channels x 4 columns per lane: 50 columns in blocks of 16, 10 channels in blocks of 8
    expect(lanes.workgroups).toEqual([4, 2, 1]);
    // 27 reduction steps (3 channels x 3 x 3): 6 rounds of 4, then a last one of 3 whose fourth lane loads a clamped step
    expect(lanes.code).toContain('let kn = 6 + min(ofs0, 0);');
    expect(lanes.code).toContain('let ka = min(24 + i32(sgl), 26);');
    expect(lanes.code).toContain('subgroupBroadcast(av7, 3u)');
    // padding conditions are joined with `&` (no branches: SwiftShader compiles unrolled branches for
    // seconds); without gaps in the input, a column's position is its base plus the step's offset
    expect(lanes.code).not.toContain('&&');
    expect(lanes.code).toContain('let q0_0 = p0_0 * 2 - 1;');
    expect(lanes.code).toContain('let in0 = (u32(q0_0 + kd0) < 9u) & (u32(q1_0 + kd1) < 9u);');
    // with gaps (a strided convolution's input gradient: lhsDilation 2) each step works out the full position
    const gaps = lowerOne('conv', { ...attrs, stride: [1, 1], lhsDilation: [2, 2] }, [inp([2, 1, 3, 9, 9]), inp([1, 10, 3, 3, 3])], { shape: [2, 1, 10, 17, 17], dtype: 'float32' })[0];
    const gapped = wgslSource(gaps, { convLanes: 4, limits: { subgroupMinSize: 4 } }).code;
    expect(gapped).toContain('let ok0_0 = (t0_0 >= 0) & (t0_0 % 2 == 0) & (y0_0 < 9);');
    expect(gapped).not.toContain('&&');
    for (const tiled of [wgslSource(spec, { convLanes: 4 }), wgslSource(spec, { convLanes: 8, limits: { subgroupMinSize: 4 } }), wgslSource(spec)]) {
      expect(tiled.code).toContain('var<workgroup> tA');
      expect(tiled.code).not.toContain('subgroup');
    }
  });
});
