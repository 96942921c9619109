// The CPU device: storages are typed arrays; kernels are generated JavaScript, compiled once per spec.

import { typedArrayFor, type DType, type TypedArray } from '../ir/dtype.ts';
import type { KernelSpec } from '../ir/kernel.ts';
import { compileJs, compileJsProgram, setJsKernelEnv, type JsKernelFn } from '../compiler/codegen/js.ts';
import { gemm } from './gemm-wasm.ts';
import { registerBackend, type Backend, type BoundArg, type Storage } from './device.ts';

export interface CpuStorage extends Storage { readonly data: TypedArray }

const cache = new Map<string, JsKernelFn>();

/** The compiled function of a kernel, cached by the kernel's structure (its name is only a label). */
export function cpuKernel(spec: KernelSpec): JsKernelFn {
  const key = JSON.stringify(spec.kernel) + '|' + spec.args.map((a) => a.dtype).join(',');
  let fn = cache.get(key);
  if (!fn) {
    fn = compileJs(spec);
    cache.set(key, fn);
  }
  return fn;
}

const wrap = (data: TypedArray, dtype: DType): CpuStorage => ({ device: 'cpu', dtype, size: data.length, data });

const arrayOf = (a: BoundArg): TypedArray => {
  const d = (a.storage as CpuStorage).data;
  return a.offset === 0 ? d : d.subarray(a.offset);
};

export const cpuBackend: Backend = {
  name: 'cpu',
  target: { language: 'js' },
  alloc: (dtype, size) => wrap(typedArrayFor(dtype, size), dtype),
  write(s, data) { (s as CpuStorage).data.set(data); },
  upload(data) {
    const dtype: DType = data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : 'bool';
    return wrap(data, dtype);
  },
  run(specs: readonly KernelSpec[], args: readonly BoundArg[], params: readonly number[] = []) {
    const arrays = args.map(arrayOf);
    for (const spec of specs) cpuKernel(spec)(...arrays, params);
  },
  prepare(spec) {
    const fn = cpuKernel(spec);
    const noParams: number[] = [];
    return (args) => fn(...args.map(arrayOf), noParams);
  },
  prepareProgram(specs, bindings) {
    const program = compileJsProgram(specs, bindings);
    const arrays: TypedArray[] = [];
    return (table) => {
      for (let i = 0; i < table.length; i++) arrays[i] = (table[i] as CpuStorage).data;
      program(arrays);
    };
  },
  async read(s, offset, size) { return (s as CpuStorage).data.slice(offset, offset + size); },
  readSync(s, offset, size) { return (s as CpuStorage).data.slice(offset, offset + size); },
  settle: () => null, // kernels run synchronously: nothing is ever queued
};

setJsKernelEnv({ gemm });
registerBackend(cpuBackend);
