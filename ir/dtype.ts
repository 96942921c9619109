// Element types and their host representations.

export type DType = 'float32' | 'float64' | 'int32' | 'bool';
export const DTYPES: readonly DType[] = ['float32', 'float64', 'int32', 'bool'];

export type TypedArray = Float32Array | Float64Array | Int32Array | Uint8Array;

/** A typed array class: constructed with a length, or over a buffer from a byte offset. */
export interface TypedArrayClass {
  new (length: number): TypedArray;
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
}

/** The host array class of each dtype (bool: one byte per element). */
export const arrayClassOf: Record<DType, TypedArrayClass> = { float32: Float32Array, float64: Float64Array, int32: Int32Array, bool: Uint8Array };

/** A zeroed host array of `length` elements; with `shared`, over a SharedArrayBuffer (which worker threads can see). */
export function typedArrayFor(dtype: DType, length: number, shared = false): TypedArray {
  if (shared) {
    const C = arrayClassOf[dtype];
    return new C(new SharedArrayBuffer(length * C.BYTES_PER_ELEMENT));
  }
  // one constructor per call site: V8 allocates these faster than through a class chosen at run time
  switch (dtype) {
    case 'float32': return new Float32Array(length);
    case 'float64': return new Float64Array(length);
    case 'int32': return new Int32Array(length);
    case 'bool': return new Uint8Array(length);
  }
}

export function dtypeOfArray(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int32Array) return 'int32';
  return 'bool';
}

export const isDType = (d: unknown): d is DType => typeof d === 'string' && (DTYPES as readonly string[]).includes(d);
/** `d` as a dtype option of `op`, or a clear error naming the dtypes there are. */
export function checkDTypeName(op: string, d: unknown): DType {
  if (!isDType(d)) throw new Error(`${op}: unknown dtype ${typeof d === 'string' ? `'${d}'` : String(d)} (expected one of ${DTYPES.join(', ')})`);
  return d;
}

export const bytesPerElement = (d: DType): number => (d === 'float64' ? 8 : 4);

export const isFloat = (d: DType): boolean => d === 'float32' || d === 'float64';

/** PyTorch-style promotion for two tensor operands: bool < int32 < float32 < float64. */
export function promote(a: DType, b: DType): DType {
  const rank = (d: DType) => (d === 'bool' ? 0 : d === 'int32' ? 1 : d === 'float32' ? 2 : 3);
  return rank(a) >= rank(b) ? a : b;
}

/**
 * The type two operands of a comparison are compared in: the promoted type, with bools compared as
 * int32 (float32 and float64 operands compare exactly: a float32 value is a float64 value).
 */
export const compareType = (a: DType, b: DType): DType => { const t = promote(a, b); return t === 'bool' ? 'int32' : t; };
