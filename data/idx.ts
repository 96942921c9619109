// The IDX format the MNIST files use (LeCun's "idx3-ubyte"), and MNIST's two files as tensors. Every
// file is untrusted: a wrong magic, an unknown type, or a size that disagrees with the header is a
// clear error naming the source, never an out-of-range read. Used by ./read.ts (data.idx and
// data.mnist({ source }), loaded on first use) and ./mnist-package.ts (data.mnist() in Node), so a
// browser build loads it only with ./read.ts.

import { tensor, type Tensor } from '../runtime/tensor.ts';

// The IDX element types: code -> bytes per element and the typed array kiln keeps them in.
const idxTypes = {
  0x08: { name: 'unsigned byte', size: 1 },
  0x09: { name: 'signed byte', size: 1 },
  0x0b: { name: 'short', size: 2 },
  0x0c: { name: 'int', size: 4 },
  0x0d: { name: 'float', size: 4 },
  0x0e: { name: 'double', size: 8 },
} as const;
type IdxCode = keyof typeof idxTypes;

export interface IdxArray {
  dims: number[];
  /** the element type: 'unsigned byte', 'signed byte', 'short', 'int', 'float' or 'double' */
  type: (typeof idxTypes)[IdxCode]['name'];
  /** the raw elements (big-endian in the file, native here) */
  values: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

/** Parses an IDX file (validated: a corrupt one is a clear error naming `what`). */
export function parseIdx(bytes: Uint8Array, what = 'idx'): IdxArray {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new Error(`${what}: not an IDX file (it must start with two zero bytes, a type and a rank; starts with [${head}], ${bytes.byteLength} bytes)`);
  }
  const code = bytes[2];
  if (!(code in idxTypes)) throw new Error(`${what}: unknown IDX element type 0x${code.toString(16)} (expected 0x08, 0x09, 0x0b, 0x0c, 0x0d or 0x0e)`);
  const { name, size } = idxTypes[code as IdxCode];
  const ndim = bytes[3];
  const offset = 4 + 4 * ndim;
  if (ndim === 0 || bytes.byteLength < offset) {
    throw new Error(`${what}: IDX header of rank ${ndim} needs ${offset} bytes but the file has ${bytes.byteLength}`);
  }
  const dims: number[] = [];
  for (let i = 0; i < ndim; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.byteLength - offset !== count * size) {
    throw new Error(`${what}: IDX dims [${dims.join(', ')}] of ${name}s need ${count * size} data bytes but the file has ${bytes.byteLength - offset} (truncated or corrupt)`);
  }
  const at = (i: number): number => offset + i * size;
  let values: IdxArray['values'];
  switch (code as IdxCode) {
    case 0x08: values = bytes.slice(offset); break;
    case 0x09: values = new Int8Array(bytes.slice(offset).buffer); break;
    case 0x0b: values = Int16Array.from({ length: count }, (_, i) => view.getInt16(at(i), false)); break;
    case 0x0c: values = Int32Array.from({ length: count }, (_, i) => view.getInt32(at(i), false)); break;
    case 0x0d: values = Float32Array.from({ length: count }, (_, i) => view.getFloat32(at(i), false)); break;
    case 0x0e: values = Float64Array.from({ length: count }, (_, i) => view.getFloat64(at(i), false)); break;
  }
  return { dims, type: name, values };
}

/** An IDX file's values as a tensor of its dims: integer types as int32, float and double as float32. */
export function idxTensor(bytes: Uint8Array, what: string): Tensor {
  const { dims, values } = parseIdx(bytes, what);
  if (values instanceof Float32Array || values instanceof Float64Array) return tensor(Float32Array.from(values), { shape: dims, dtype: 'float32' });
  return tensor(Int32Array.from(values), { shape: dims, dtype: 'int32' });
}

/** The standard names of a split's two MNIST files. */
export function mnistFileNames(split: 'train' | 'test'): { images: string; labels: string } {
  const prefix = split === 'train' ? 'train' : 't10k';
  return { images: `${prefix}-images-idx3-ubyte`, labels: `${prefix}-labels-idx1-ubyte` };
}

/**
 * MNIST's images `[N, 1, rows, cols]` (float32 in [0, 1]) and labels `[N]` (int32) from the bytes of
 * its two IDX files, checked to be MNIST-shaped (so a wrong file is a clear error naming it).
 */
export function mnistTensors(imageBytes: Uint8Array, labelBytes: Uint8Array, names: { images: string; labels: string }): [images: Tensor, labels: Tensor] {
  const images = parseIdx(imageBytes, `mnist images (${names.images})`);
  const labels = parseIdx(labelBytes, `mnist labels (${names.labels})`);
  if (images.type !== 'unsigned byte' || images.dims.length !== 3) {
    throw new Error(`mnist: ${names.images} must hold unsigned bytes of dims [N, rows, cols], got ${images.type}s of dims [${images.dims.join(', ')}]`);
  }
  if (labels.type !== 'unsigned byte' || labels.dims.length !== 1) {
    throw new Error(`mnist: ${names.labels} must hold unsigned bytes of dims [N], got ${labels.type}s of dims [${labels.dims.join(', ')}]`);
  }
  const [n, h, w] = images.dims;
  if (labels.dims[0] !== n) throw new Error(`mnist: ${n} images (${names.images}) but ${labels.dims[0]} labels (${names.labels})`);
  const pixels = new Float32Array(images.values.length);
  for (let i = 0; i < pixels.length; i++) pixels[i] = images.values[i] / 255;
  const classes = Int32Array.from(labels.values);
  const bad = classes.findIndex((c) => c > 9);
  if (bad >= 0) throw new Error(`mnist: label ${bad} in ${names.labels} is ${classes[bad]}, not a digit 0..9`);
  return [
    tensor(pixels, { shape: [n, 1, h, w], dtype: 'float32', device: 'cpu' }),
    tensor(classes, { shape: [n], dtype: 'int32', device: 'cpu' }),
  ];
}
