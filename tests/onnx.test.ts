// kiln.onnx.export without ONNX Runtime (interop/onnx-check.ts runs the models in it): the protobuf
// encoding read back field by field with a small reader written here, the exported graph's names,
// initializers and symbolic batch, and the error paths (a clear error naming the construct and the
// user's line; nothing written).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { encodeModel } from '../onnx/proto.ts';
import { describeEachDevice } from './devices.ts';

type Tensor = kiln.Tensor;

// ---- a protobuf reader: enough to walk ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto

interface Field { no: number; wire: number; int: bigint; bytes: Uint8Array }

function readVarint(b: Uint8Array, at: { i: number }): bigint {
  let v = 0n, shift = 0n;
  for (;;) {
    const x = b[at.i++];
    v |= BigInt(x & 0x7f) << shift;
    if ((x & 0x80) === 0) return v;
    shift += 7n;
  }
}

function fields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  const at = { i: 0 };
  while (at.i < b.length) {
    const tag = Number(readVarint(b, at)), no = tag >> 3, wire = tag & 7;
    if (wire === 0) out.push({ no, wire, int: readVarint(b, at), bytes: new Uint8Array() });
    else if (wire === 2) {
      const n = Number(readVarint(b, at));
      out.push({ no, wire, int: 0n, bytes: b.subarray(at.i, at.i + n) });
      at.i += n;
    } else if (wire === 5) { out.push({ no, wire, int: 0n, bytes: b.subarray(at.i, at.i + 4) }); at.i += 4; }
    else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}
const all = (b: Uint8Array, no: number): Field[] => fields(b).filter((f) => f.no === no);
const one = (b: Uint8Array, no: number): Field => all(b, no)[0];
const str = (f: Field | undefined): string => (f ? new TextDecoder().decode(f.bytes) : '');
const int64 = (f: Field): number => Number(BigInt.asIntN(64, f.int));
const packed = (f: Field): number[] => { const at = { i: 0 }, v: number[] = []; while (at.i < f.bytes.length) v.push(Number(BigInt.asIntN(64, readVarint(f.bytes, at)))); return v; };

interface Decoded {
  irVersion: number; opset: number; producer: string;
  nodes: { op: string; inputs: string[]; outputs: string[]; attrs: Record<string, Field[]>; doc: string }[];
  initializers: Map<string, { dims: number[]; type: number; raw: Uint8Array }>;
  inputs: { name: string; type: number; dims: (number | string)[] }[];
  outputs: { name: string; type: number; dims: (number | string)[] }[];
}

function valueInfo(b: Uint8Array) {
  const tensorType = one(one(b, 2).bytes, 1).bytes;
  const dims = all(one(tensorType, 2).bytes, 1).map((d) => { const v = fields(d.bytes)[0]; return v.no === 1 ? int64(v) : str(v); });
  return { name: str(one(b, 1)), type: Number(one(tensorType, 1).int), dims };
}

function decode(bytes: Uint8Array): Decoded {
  const g = one(bytes, 7).bytes;
  return {
    irVersion: Number(one(bytes, 1).int),
    producer: str(one(bytes, 2)),
    opset: Number(one(one(bytes, 8).bytes, 2).int),
    nodes: all(g, 1).map((n) => ({
      op: str(one(n.bytes, 4)),
      inputs: all(n.bytes, 1).map(str),
      outputs: all(n.bytes, 2).map(str),
      attrs: Object.fromEntries(all(n.bytes, 5).map((a) => [str(one(a.bytes, 1)), fields(a.bytes)])),
      doc: str(one(n.bytes, 6)),
    })),
    initializers: new Map(all(g, 5).map((t) => [str(one(t.bytes, 8)), { dims: one(t.bytes, 1) ? packed(one(t.bytes, 1)) : [], type: Number(one(t.bytes, 2).int), raw: one(t.bytes, 9).bytes }])),
    inputs: all(g, 11).map((f) => valueInfo(f.bytes)),
    outputs: all(g, 12).map((f) => valueInfo(f.bytes)),
  };
}

const floats = (raw: Uint8Array): number[] => Array.from(new Float32Array(raw.slice().buffer));

describe('onnx/proto.ts (the hand-written protobuf encoding)', () => {
  const bytes = encodeModel({
    irVersion: 8, opset: 17, producerName: 'kiln', producerVersion: '0.1.0',
    graph: {
      name: 'g',
      nodes: [{ opType: 'Softmax', inputs: ['x'], outputs: ['y'], attrs: { axis: { kind: 'int', value: -1 }, perm: { kind: 'ints', value: [-2, 0, 300] }, alpha: { kind: 'float', value: 0.5 } } }],
      initializers: [{ name: 'w', dims: [2], dataType: 1, rawData: new Uint8Array(new Float32Array([1.5, -2]).buffer) }],
      inputs: [{ name: 'x', elemType: 1, dims: ['batch', 3] }],
      outputs: [{ name: 'y', elemType: 1, dims: ['batch', 3] }],
    },
  });

  it('writes a negative int64 as a ten-byte two\'s complement varint', () => {
    const minusOne = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    const hex = Buffer.from(bytes).toString('hex');
    expect(hex).toContain(Buffer.from([0x18, ...minusOne]).toString('hex')); // AttributeProto.i (field 3)
    const attrs = decode(bytes).nodes[0].attrs;
    expect(int64(attrs.axis.find((f) => f.no === 3)!)).toBe(-1);
    expect(packed(attrs.perm.find((f) => f.no === 8)!)).toEqual([-2, 0, 300]);
    expect(new DataView(attrs.alpha.find((f) => f.no === 2)!.bytes.slice().buffer).getFloat32(0, true)).toBe(0.5);
    expect(Number(attrs.axis.find((f) => f.no === 20)!.int)).toBe(2); // AttributeType INT
  });

  it('reads back as the model that was written', () => {
    const m = decode(bytes);
    expect(m).toMatchObject({ irVersion: 8, opset: 17, producer: 'kiln' });
    expect(m.nodes[0]).toMatchObject({ op: 'Softmax', inputs: ['x'], outputs: ['y'] });
    expect(m.inputs).toEqual([{ name: 'x', type: 1, dims: ['batch', 3] }]);
    expect(floats(m.initializers.get('w')!.raw)).toEqual([1.5, -2]);
  });

  it('refuses an integer it cannot write exactly', () => {
    expect(() => encodeModel({ irVersion: 8, opset: 17, producerName: 'k', producerVersion: '0', graph: { name: 'g', nodes: [], initializers: [{ name: 'w', dims: [2 ** 60], dataType: 1, rawData: new Uint8Array() }], inputs: [], outputs: [] } }))
      .toThrow(/^onnx: integer 11529215046068\d+ is not exactly representable$/);
  });
});

describeEachDevice('kiln.onnx.export', (device) => {
  const mlp = () => {
    kiln.manualSeed(0);
    return new kiln.nn.Sequential(new kiln.nn.Linear(4, 3, { device }), new kiln.nn.ReLU(), new kiln.nn.Dropout(0.5), new kiln.nn.Linear(3, 2, { device }));
  };

  it('a Module: initializers named as kiln names them, with their values; a symbolic batch; modes restored', async () => {
    const model = mlp();
    const m = decode(await kiln.onnx.export(model, [kiln.randn([5, 4], { device })]));
    expect(m).toMatchObject({ irVersion: 8, opset: 17, producer: 'kiln' });
    expect([...m.initializers.keys()].filter((k) => !k.startsWith('const'))).toEqual(['0.weight', '0.bias', '3.weight', '3.bias']);
    const w = m.initializers.get('0.weight')!;
    expect(w.dims).toEqual([3, 4]);
    expect(floats(w.raw)).toEqual(Array.from(await (model.at(0) as kiln.nn.Linear).weight.data()));
    expect(m.inputs).toEqual([{ name: 'input', type: 1, dims: ['batch', 4] }]);
    expect(m.outputs).toEqual([{ name: 'output', type: 1, dims: ['batch', 2] }]);
    const ops = m.nodes.map((n) => n.op);
    // F.linear's x @ W^T + b reads as Gemm; the bias is broadcast by ONNX, not expanded
    expect(ops.filter((o) => o === 'Gemm')).toHaveLength(2);
    expect(ops).toContain('Relu');
    expect(ops).not.toContain('Expand');
    // Dropout is traced in eval mode (no random numbers); the module is back in training mode after
    expect(ops).not.toContain('RandomUniformLike');
    expect(model.training).toBe(true);
    // each node says which user line made it (for a library Module: the line that exported it)
    expect(m.nodes.find((n) => n.op === 'Relu')!.doc).toMatch(/^tests\/onnx\.test\.ts:\d+ +const m = decode\(await kiln\.onnx\.export\(model/);
  });

  it('buffers are initializers under their names; a BatchNorm is traced in eval mode (running statistics)', async () => {
    kiln.manualSeed(1);
    const model = new kiln.nn.Sequential(new kiln.nn.Linear(3, 2, { device }), new kiln.nn.BatchNorm1d(2, { device }));
    model.forward(kiln.randn([4, 3], { device }));
    const m = decode(await kiln.onnx.export(model, [kiln.randn([5, 3], { device })]));
    const mean = m.initializers.get('1.runningMean')!;
    expect(floats(mean.raw)).toEqual(Array.from(await (model.at(1) as kiln.nn.BatchNorm1d).runningMean!.data()));
    expect(m.initializers.has('1.runningVar')).toBe(true);
    expect(m.nodes.map((n) => n.op)).not.toContain('ReduceSum'); // no batch statistics
    expect(model.training).toBe(true);
  });

  it('dynamicBatch: false keeps every dimension as traced; names and opset are the caller\'s', async () => {
    const m = decode(await kiln.onnx.export(mlp(), [kiln.randn([5, 4], { device })], { dynamicBatch: false, opset: 18, inputNames: ['pixels'], outputNames: ['logits'] }));
    expect(m).toMatchObject({ irVersion: 8, opset: 18 });
    expect(m.inputs).toEqual([{ name: 'pixels', type: 1, dims: [5, 4] }]);
    expect(m.outputs).toEqual([{ name: 'logits', type: 1, dims: [5, 2] }]);
  });

  it('a function returning an object: outputs take its keys; int and bool inputs keep their types', async () => {
    const fn = (x: Tensor, idx: Tensor, mask: Tensor) => ({ picked: x.gather(1, idx), masked: kiln.where(mask, x, 0).sum(1) });
    const m = decode(await kiln.onnx.export(fn, [kiln.randn([3, 4], { device }), kiln.zeros([3, 2], { dtype: 'int32', device }), kiln.ones([3, 4], { dtype: 'bool', device })]));
    expect(m.inputs.map((v) => [v.name, v.type, v.dims])).toEqual([['input0', 1, ['batch', 4]], ['input1', 6, ['batch', 2]], ['input2', 9, ['batch', 4]]]);
    expect(m.outputs.map((v) => [v.name, v.dims])).toEqual([['picked', ['batch', 2]], ['masked', ['batch']]]);
    expect(m.nodes.map((n) => n.op)).toEqual(expect.arrayContaining(['GatherElements', 'Where', 'ReduceSum']));
  });

  it('composites read as one op: softmax, log-softmax; a constant operand is a 0-d initializer', async () => {
    const fn = (x: Tensor) => ({ p: x.softmax(1), lp: x.logSoftmax(0), y: x.mul(3) });
    const m = decode(await kiln.onnx.export(fn, [kiln.randn([3, 4], { device })]));
    const ops = m.nodes.map((n) => n.op);
    expect(ops.filter((o) => o !== 'Identity').sort()).toEqual(['LogSoftmax', 'Mul', 'Softmax']);
    expect(int64(m.nodes.find((n) => n.op === 'Softmax')!.attrs.axis.find((f) => f.no === 3)!)).toBe(1);
    expect(int64(m.nodes.find((n) => n.op === 'LogSoftmax')!.attrs.axis.find((f) => f.no === 3)!)).toBe(0);
    const three = m.initializers.get(m.nodes.find((n) => n.op === 'Mul')!.inputs[1])!;
    expect(three.dims).toEqual([]);
    expect(floats(three.raw)).toEqual([3]);
  });

  it('composites: a layer norm with scale and bias is LayerNormalization; indexSelect is Gather; MatMul broadcasts the weight', async () => {
    const w = kiln.randn([4], { device }), b = kiln.randn([4], { device }), emb = kiln.randn([10, 4], { device }), proj = kiln.randn([4, 3], { device });
    const fn = (tokens: Tensor) => {
      const [B, T] = tokens.shape;
      const x = emb.indexSelect(0, tokens.reshape([B * T])).reshape([B, T, 4]);
      const xc = x.sub(x.mean(-1, true));
      return xc.mul(xc.mul(xc).mean(-1, true).add(1e-5).rsqrt()).mul(w).add(b).matmul(proj);
    };
    const m = decode(await kiln.onnx.export(fn, [kiln.zeros([2, 5], { dtype: 'int32', device })]));
    expect(m.nodes.map((n) => n.op).filter((o) => o !== 'Reshape')).toEqual(['Gather', 'LayerNormalization', 'MatMul']);
    const ln = m.nodes.find((n) => n.op === 'LayerNormalization')!;
    expect(int64(ln.attrs.axis.find((f) => f.no === 3)!)).toBe(2);
    expect(new DataView(ln.attrs.epsilon.find((f) => f.no === 2)!.bytes.slice().buffer).getFloat32(0, true)).toBeCloseTo(1e-5, 10);
    expect(m.inputs).toEqual([{ name: 'input', type: 6, dims: ['batch', 5] }]);
  });

  it('outputs: a computed value takes the output name; an input or a value returned twice goes through Identity', async () => {
    const m = decode(await kiln.onnx.export((x: Tensor) => [x, x.neg(), x.neg()], [kiln.ones([2], { device })]));
    expect(m.nodes.map((n) => `${n.op}(${n.inputs}) -> ${n.outputs}`).sort()).toEqual(['Identity(input) -> output0', 'Identity(output1) -> output2', 'Neg(input) -> output1']);
    expect(m.outputs.map((o) => o.name)).toEqual(['output0', 'output1', 'output2']);
  });

  it('a graph that changes with the batch size is exported static, or refused when a dynamic batch is required', async () => {
    const fn = (x: Tensor) => (x.shape[0] > 4 ? x.exp() : x.log());
    const m = decode(await kiln.onnx.export(fn, [kiln.rand([4, 2], { device })]));
    expect(m.inputs[0].dims).toEqual([4, 2]);
    await expect(kiln.onnx.export(fn, [kiln.rand([4, 2], { device })], { dynamicBatch: true }))
      .rejects.toThrow(/the batch dimension cannot be dynamic: traced at batch sizes 4, 5, 6: node %1 \(log at tests\/onnx\.test\.ts:\d+/);
  });
});

describe('kiln.onnx.export conv', () => {
  it('a grouped, strided Conv2d is one Conv with its group, strides and pads; the batch stays symbolic', async () => {
    const conv = new kiln.nn.Conv2d(4, 6, 3, { stride: 2, padding: 1, groups: 2 });
    const m = decode(await kiln.onnx.export(conv, [kiln.randn([2, 4, 8, 8])]));
    const c = m.nodes.find((n) => n.op === 'Conv')!;
    expect(int64(c.attrs.group.find((f) => f.no === 3)!)).toBe(2);
    expect(packed(c.attrs.strides.find((f) => f.no === 8)!)).toEqual([2, 2]);
    expect(packed(c.attrs.pads.find((f) => f.no === 8)!)).toEqual([1, 1, 1, 1]);
    expect(m.inputs[0].dims).toEqual(['batch', 4, 8, 8]);
    expect(m.outputs[0].dims).toEqual(['batch', 6, 4, 4]);
  });
});

describe('kiln.onnx.export float64', () => {
  it('float64 inputs and weights are DOUBLE, their bytes eight each', async () => {
    const w = kiln.tensor([[0.1, 0.2], [0.3, 0.4]], { dtype: 'float64' });
    kiln.setLabel(w, 'w64');
    const m = decode(await kiln.onnx.export((x: Tensor) => x.matmul(w), [kiln.ones([3, 2], { dtype: 'float64' })]));
    expect(m.inputs).toEqual([{ name: 'input', type: 11, dims: ['batch', 2] }]);
    expect(m.outputs[0].type).toBe(11);
    const init = m.initializers.get('w64')!;
    expect(init.type).toBe(11);
    expect(Array.from(new Float64Array(init.raw.slice().buffer))).toEqual([0.1, 0.2, 0.3, 0.4]);
  });
});

describe('kiln.onnx.export errors: a clear error, nothing written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-onnx-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the file when asked, the same bytes it returns', async () => {
    const path = join(dir, 'ok.onnx');
    const bytes = await kiln.onnx.export((x: Tensor) => x.mul(2), [kiln.ones([2, 2])], { path });
    expect(new Uint8Array(readFileSync(path))).toEqual(bytes);
  });

  it('an in-place update of a captured tensor (a write-back) names the tensor and the line', async () => {
    const path = join(dir, 'write.onnx');
    const running = kiln.zeros([3]);
    kiln.setLabel(running, 'stats.mean');
    const fn = (x: Tensor) => { running.add_(x.mean(0)); return x.sub(running); };
    await expect(kiln.onnx.export(fn, [kiln.ones([2, 3])], { path }))
      .rejects.toThrow(/onnx\.export: the traced forward writes into stats\.mean \(an in-place update of a captured tensor at tests\/onnx\.test\.ts:\d+ +const fn = /);
    expect(existsSync(path)).toBe(false);
    expect(Array.from(running.dataSync())).toEqual([0, 0, 0]);
  });

  it('a primitive with no ONNX Runtime kernel names the op and the user\'s line', async () => {
    const path = join(dir, 'bool.onnx');
    const fn = (a: Tensor) => a.matmul(a);
    await expect(kiln.onnx.export(fn, [kiln.ones([2, 2], { dtype: 'bool' })], { path }))
      .rejects.toThrow(/onnx\.export: matmul %\d+ at tests\/onnx\.test\.ts:\d+ +const fn = \(a: Tensor\) => a\.matmul\(a\);: a matrix product of bool tensors has no ONNX Runtime kernel/);
    expect(existsSync(path)).toBe(false);
  });

  it('reading a value while tracing is the tracer\'s error, with its location', async () => {
    const path = join(dir, 'read.onnx');
    await expect(kiln.onnx.export((x: Tensor) => (x.sum().itemSync() > 0 ? x : x.neg()), [kiln.ones([2])], { path }))
      .rejects.toThrow(/itemSync\(\) reads the value of a traced tensor .* at tests\/onnx\.test\.ts:\d+/);
    expect(existsSync(path)).toBe(false);
  });

  it('bad arguments', async () => {
    const x = [kiln.ones([2])];
    await expect(kiln.onnx.export((t: Tensor) => t, x, { opset: 12 })).rejects.toThrow('onnx.export: opset 12 is not supported (kiln writes opsets 17 to 20)');
    await expect(kiln.onnx.export((t: Tensor) => t, x, { inputNames: ['a', 'b'] })).rejects.toThrow('onnx.export: 2 input names for 1 inputs');
    await expect(kiln.onnx.export((t: Tensor) => t, x, { outputNames: ['a', 'b'] })).rejects.toThrow('onnx.export: 2 output names for 1 returned tensors');
    await expect(kiln.onnx.export((t: Tensor) => t.neg(), x, { inputNames: ['x'], outputNames: ['x'] })).rejects.toThrow("onnx.export: 'x' names both an input and an output");
    await expect(kiln.onnx.export(() => undefined, x)).rejects.toThrow('onnx.export: the traced function returns no tensor');
    await expect(kiln.onnx.export((t: Tensor) => t, [[1, 2] as unknown as Tensor])).rejects.toThrow('onnx.export: example input 0 is not a Tensor (got object)');
  });
});
