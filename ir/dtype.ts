// Element types and their host representations.

export type DType = 'float32' | 'int32' | 'bool';
export const DTYPES: readonly DType[] = ['float32', 'int32', 'bool'];

export type TypedArray = Float32Array | Int32Array | Uint8Array;

export function typedArrayFor(dtype: DType, length: number): TypedArray {
  switch (dtype) {
    case 'float32': return new Float32Array(length);
    case 'int32': return new Int32Array(length);
    case 'bool': return new Uint8Array(length);
  }
}

export function dtypeOfArray(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Int32Array) return 'int32';
  return 'bool';
}

export const bytesPerElement = (_: DType): number => 4;

export const isFloat = (d: DType): boolean => d === 'float32';

/** PyTorch-style promotion for two tensor operands: bool < int32 < float32. */
export function promote(a: DType, b: DType): DType {
  const rank = (d: DType) => (d === 'bool' ? 0 : d === 'int32' ? 1 : 2);
  return rank(a) >= rank(b) ? a : b;
}
