// Element types as files store them (safetensors' names; torch storages map onto the same ones),
// and the one rule that turns them into kiln's dtypes:
//   F32, I32, BOOL          kept as they are (float32, int32, bool); kiln writes float64 as F64;
//   F64, F16, BF16          -> float32 (F16 and BF16 exactly; F64 rounded to nearest, and a finite
//                              value beyond float32's range is an error, not an Infinity);
//   I64, I16, I8, U8        -> int32 (I16/I8/U8 exactly; an I64 value outside int32's range is an
//                              error naming the tensor and the value, never silently wrapped).
// Bytes are little-endian in both formats; reading goes through a DataView so it does not depend on
// the host's byte order or on the data's alignment inside the file.

import type { DType, TypedArray } from '../../ir/dtype.ts';

export type FileDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

interface DTypeInfo { bytes: number; kiln: DType }

const INFO: Record<FileDType, DTypeInfo> = {
  F64: { bytes: 8, kiln: 'float32' },
  F32: { bytes: 4, kiln: 'float32' },
  F16: { bytes: 2, kiln: 'float32' },
  BF16: { bytes: 2, kiln: 'float32' },
  I64: { bytes: 8, kiln: 'int32' },
  I32: { bytes: 4, kiln: 'int32' },
  I16: { bytes: 2, kiln: 'int32' },
  I8: { bytes: 1, kiln: 'int32' },
  U8: { bytes: 1, kiln: 'int32' },
  BOOL: { bytes: 1, kiln: 'bool' },
};

export const FILE_DTYPES = Object.keys(INFO) as FileDType[];

export function isFileDType(s: unknown): s is FileDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(INFO, s);
}

export const bytesOf = (d: FileDType): number => INFO[d].bytes;
export const kilnDTypeOf = (d: FileDType): DType => INFO[d].kiln;

/** The file dtype kiln writes for one of its own dtypes. */
export function fileDTypeOf(d: DType): FileDType {
  switch (d) {
    case 'float32': return 'F32';
    case 'float64': return 'F64';
    case 'int32': return 'I32';
    case 'bool': return 'BOOL';
  }
}

/** A tensor as a file holds it, converted to a kiln dtype: contiguous, row-major. */
export interface RawTensor { dtype: DType; shape: number[]; data: TypedArray }

/** A float16 bit pattern as a number (exact). */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * Decodes `count` elements of `dtype` from `bytes` into kiln's typed array for that dtype.
 * `what` names the tensor in errors (`'fc1.weight'` in model.safetensors).
 */
export function decodeElements(dtype: FileDType, bytes: Uint8Array, count: number, what: string): TypedArray {
  const need = count * bytesOf(dtype);
  if (bytes.byteLength < need) throw new Error(`${what}: ${count} ${dtype} elements need ${need} bytes, the file has ${bytes.byteLength}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, need);
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    }
    case 'F64': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) {
        const v = dv.getFloat64(8 * i, true);
        out[i] = v;
        if (!Number.isFinite(out[i]) && Number.isFinite(v)) throw new Error(`${what}: F64 value ${v} (element ${i}) is beyond float32's range; kiln reads F64 as float32`);
      }
      return out;
    }
    case 'F16': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfToNumber(dv.getUint16(2 * i, true));
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(count);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) u[i] = dv.getUint16(2 * i, true) << 16;
      return out;
    }
    case 'I64': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const lo = dv.getInt32(8 * i, true);
        const hi = dv.getInt32(8 * i + 4, true);
        // In int32 range exactly when the high word is the sign extension of the low word.
        if (hi !== lo >> 31) throw new Error(`${what}: I64 value ${dv.getBigInt64(8 * i, true)} (element ${i}) does not fit in int32; kiln reads I64 as int32`);
        out[i] = lo;
      }
      return out;
    }
    case 'I32': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getInt32(4 * i, true);
      return out;
    }
    case 'I16': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getInt16(2 * i, true);
      return out;
    }
    case 'I8': return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, count));
    case 'U8': return Int32Array.from(bytes.subarray(0, count));
    case 'BOOL': return Uint8Array.from(bytes.subarray(0, count), (b) => (b !== 0 ? 1 : 0));
  }
}

/** Encodes kiln's values little-endian as `fileDTypeOf(dtype)`. */
export function encodeElements(dtype: DType, data: TypedArray): Uint8Array {
  const fd = fileDTypeOf(dtype);
  const out = new Uint8Array(data.length * bytesOf(fd));
  const dv = new DataView(out.buffer);
  if (fd === 'F32') for (let i = 0; i < data.length; i++) dv.setFloat32(4 * i, data[i], true);
  else if (fd === 'F64') for (let i = 0; i < data.length; i++) dv.setFloat64(8 * i, data[i], true);
  else if (fd === 'I32') for (let i = 0; i < data.length; i++) dv.setInt32(4 * i, data[i], true);
  else for (let i = 0; i < data.length; i++) out[i] = data[i] !== 0 ? 1 : 0;
  return out;
}
