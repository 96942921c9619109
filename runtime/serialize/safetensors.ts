// The safetensors format (https://github.com/huggingface/safetensors), written and read by hand:
//   8 bytes   N, the header's length, unsigned little-endian
//   N bytes   JSON: { "<name>": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] }, ...,
//             "__metadata__"?: { "<key>": "<string>" } }, padded with spaces (to 8 bytes, as the
//             reference writer does)
//   the rest  the tensors' bytes, little-endian, row-major; offsets count from the end of the header.
// A file is untrusted input: every length, offset, shape and dtype is checked before a byte is read,
// and anything wrong is an Error that names the tensor and the numbers.

import { numel } from '../../ir/shape.ts';
import { bytesOf, decodeElements, encodeElements, FILE_DTYPES, fileDTypeOf, isFileDType, kilnDTypeOf, type RawTensor } from './dtypes.ts';

/** The reference implementation refuses headers over 100 MB; so does kiln (a corrupt length is caught early). */
const MAX_HEADER = 100_000_000;

export interface Safetensors { tensors: Map<string, RawTensor>; metadata: Record<string, string> }

/** Encodes tensors (in the given order) and optional string metadata as a safetensors file. */
export function encodeSafetensors(tensors: Iterable<[string, RawTensor]>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__' || name === '__proto__' || Object.prototype.hasOwnProperty.call(header, name)) throw new Error(`safetensors: duplicate or reserved tensor name '${name}'`);
    const bytes = encodeElements(t.dtype, t.data);
    header[name] = { dtype: fileDTypeOf(t.dtype), shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).byteLength) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.byteLength), true);
  out.set(head, 8);
  let at = 8 + head.byteLength;
  for (const c of chunks) { out.set(c, at); at += c.byteLength; }
  return out;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Decodes a safetensors file; tensors come back in the order of their data. `what` names the file in errors. */
export function decodeSafetensors(bytes: Uint8Array, what = 'safetensors'): Safetensors {
  const fail = (msg: string): never => { throw new Error(`${what}: ${msg}`); };
  if (bytes.byteLength < 8) fail(`the file is ${bytes.byteLength} bytes, too short for the 8-byte header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(bytes.byteLength - 8)) fail(`the header length ${n} goes beyond the end of the file (${bytes.byteLength} bytes): truncated or not a safetensors file`);
  if (n > BigInt(MAX_HEADER)) fail(`the header length ${n} is over the ${MAX_HEADER}-byte limit`);
  const headerLen = Number(n);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    fail(`the header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('the header is not a JSON object');
  const data = bytes.subarray(8 + headerLen);
  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: (typeof FILE_DTYPES)[number]; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (info === null || typeof info !== 'object' || Array.isArray(info)) fail('__metadata__ is not an object of strings');
      for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__ value for '${k}' is a ${typeof v}, not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (info === null || typeof info !== 'object') fail(`tensor '${name}': its entry is not an object`);
    const { dtype, shape, data_offsets: offs } = info as Record<string, unknown>;
    if (!isFileDType(dtype)) fail(`tensor '${name}': unknown dtype ${JSON.stringify(dtype)} (kiln reads ${FILE_DTYPES.join(', ')})`);
    if (!Array.isArray(shape) || !shape.every(isCount)) fail(`tensor '${name}': shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount) || offs[0] > offs[1]) fail(`tensor '${name}': data_offsets ${JSON.stringify(offs)} is not a pair [begin, end] with 0 <= begin <= end`);
    const [begin, end] = offs as [number, number];
    if (end > data.byteLength) fail(`tensor '${name}': data_offsets [${begin}, ${end}] go beyond the ${data.byteLength} data bytes (truncated file?)`);
    const fd = dtype as (typeof FILE_DTYPES)[number];
    const expected = numel(shape as number[]) * bytesOf(fd);
    if (end - begin !== expected) fail(`tensor '${name}': shape [${(shape as number[]).join(', ')}] of ${fd} needs ${expected} bytes, data_offsets [${begin}, ${end}] hold ${end - begin}`);
    entries.push({ name, dtype: fd, shape: shape as number[], begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < entries.length; i++) {
    const [a, b] = [entries[i - 1], entries[i]];
    if (b.begin < a.end) fail(`tensors '${a.name}' [${a.begin}, ${a.end}] and '${b.name}' [${b.begin}, ${b.end}] overlap`);
  }
  const tensors = new Map<string, RawTensor>();
  for (const e of entries) {
    tensors.set(e.name, { dtype: kilnDTypeOf(e.dtype), shape: e.shape, data: decodeElements(e.dtype, data.subarray(e.begin, e.end), numel(e.shape), `${what}: tensor '${e.name}'`) });
  }
  return { tensors, metadata };
}
