// The ONNX model format, written by hand: protobuf's wire encoding (varints, length-delimited fields,
// fixed32 floats) and the handful of ONNX messages an exported inference graph needs. Field numbers
// follow onnx/onnx.proto (IR version 8). Nothing here knows about kiln's IR: onnx/ops.ts maps
// primitives to these messages and onnx/export.ts assembles the graph.

/** ONNX TensorProto.DataType values used by kiln. */
export const OnnxDType = { float32: 1, uint8: 2, int32: 6, int64: 7, bool: 9, float64: 11 } as const;
export type OnnxElemType = (typeof OnnxDType)[keyof typeof OnnxDType];

export type AttrValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'floats'; value: readonly number[] }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: TensorProto };

export interface NodeProto { opType: string; inputs: readonly string[]; outputs: readonly string[]; name?: string; attrs?: Record<string, AttrValue>; docString?: string }
export interface TensorProto { name: string; dims: readonly number[]; dataType: OnnxElemType; rawData: Uint8Array }
/** A graph input or output: a dimension is a number or a symbolic name (a dynamic batch size). */
export interface ValueInfo { name: string; elemType: OnnxElemType; dims: readonly (number | string)[] }
export interface GraphProto { name: string; nodes: readonly NodeProto[]; initializers: readonly TensorProto[]; inputs: readonly ValueInfo[]; outputs: readonly ValueInfo[] }
export interface ModelProto { irVersion: number; opset: number; producerName: string; producerVersion: string; graph: GraphProto; docString?: string }

/**
 * Appends protobuf fields to a growing byte buffer: small values go to a byte list, large payloads
 * (initializer data) are kept as chunks and copied once, by finish().
 */
class Writer {
  private chunks: Uint8Array[] = [];
  private bytes: number[] = [];
  private size = 0;

  /** A varint. int64 values are numbers here; a negative one is its 64-bit two's complement (10 bytes). */
  varint(v: number): this {
    if (!Number.isSafeInteger(v)) throw new Error(`onnx: integer ${v} is not exactly representable`);
    let n = BigInt.asUintN(64, BigInt(v));
    while (n >= 0x80n) { this.bytes.push(Number(n & 0x7fn) | 0x80); n >>= 7n; }
    this.bytes.push(Number(n));
    return this;
  }
  private tag(field: number, wire: 0 | 1 | 2 | 5): this { return this.varint(field * 8 + wire); }
  int(field: number, v: number): this { return this.tag(field, 0).varint(v); }
  float(field: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.tag(field, 5);
    for (const x of b) this.bytes.push(x);
    return this;
  }
  bytesField(field: number, data: Uint8Array): this {
    this.tag(field, 2).varint(data.length);
    if (data.length < 256) {
      for (let i = 0; i < data.length; i++) this.bytes.push(data[i]);
    } else {
      this.flush();
      this.chunks.push(data);
      this.size += data.length;
    }
    return this;
  }
  private flush(): void {
    if (this.bytes.length === 0) return;
    this.chunks.push(Uint8Array.from(this.bytes));
    this.size += this.bytes.length;
    this.bytes = [];
  }
  string(field: number, s: string): this { return this.bytesField(field, new TextEncoder().encode(s)); }
  message(field: number, body: Writer): this { return this.bytesField(field, body.finish()); }
  /** Repeated int64 as one packed field (proto3's default; ONNX readers accept both forms). */
  packedInts(field: number, vs: readonly number[]): this {
    const body = new Writer();
    for (const v of vs) body.varint(v);
    return this.bytesField(field, body.finish());
  }
  packedFloats(field: number, vs: readonly number[]): this {
    const b = new Uint8Array(vs.length * 4), dv = new DataView(b.buffer);
    vs.forEach((v, i) => dv.setFloat32(i * 4, v, true));
    return this.bytesField(field, b);
  }
  finish(): Uint8Array {
    this.flush();
    if (this.chunks.length === 1) return this.chunks[0];
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) { out.set(c, at); at += c.length; }
    return out;
  }
}

// AttributeProto.AttributeType
const ATTR_TYPE = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const;

function tensorProto(t: TensorProto): Writer {
  const w = new Writer().packedInts(1, t.dims).int(2, t.dataType).string(8, t.name);
  return w.bytesField(9, t.rawData);
}

function attribute(name: string, a: AttrValue): Writer {
  const w = new Writer().string(1, name);
  switch (a.kind) {
    case 'float': w.float(2, a.value); break;
    case 'int': w.int(3, a.value); break;
    case 'string': w.string(4, a.value); break;
    case 'tensor': w.message(5, tensorProto(a.value)); break;
    case 'floats': w.packedFloats(7, a.value); break;
    case 'ints': w.packedInts(8, a.value); break;
    default: a satisfies never;
  }
  return w.int(20, ATTR_TYPE[a.kind]);
}

function nodeProto(n: NodeProto): Writer {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const [k, v] of Object.entries(n.attrs ?? {})) w.message(5, attribute(k, v));
  if (n.docString) w.string(6, n.docString);
  return w;
}

function valueInfo(v: ValueInfo): Writer {
  const shape = new Writer();
  for (const d of v.dims) shape.message(1, typeof d === 'number' ? new Writer().int(1, d) : new Writer().string(2, d));
  const tensorType = new Writer().int(1, v.elemType).message(2, shape);
  return new Writer().string(1, v.name).message(2, new Writer().message(1, tensorType));
}

function graphProto(g: GraphProto): Writer {
  const w = new Writer();
  for (const n of g.nodes) w.message(1, nodeProto(n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, tensorProto(t));
  for (const i of g.inputs) w.message(11, valueInfo(i));
  for (const o of g.outputs) w.message(12, valueInfo(o));
  return w;
}

/** Serialize a model to the bytes of an .onnx file. */
export function encodeModel(m: ModelProto): Uint8Array {
  const w = new Writer().int(1, m.irVersion).string(2, m.producerName).string(3, m.producerVersion);
  if (m.docString) w.string(6, m.docString);
  w.message(7, graphProto(m.graph));
  w.message(8, new Writer().string(1, '').int(2, m.opset));
  return w.finish();
}
