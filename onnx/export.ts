// kiln.onnx.export: traces a forward pass (inference: no backward, no update) with kiln's tracer and
// writes it as an ONNX model. Captured parameters and buffers become initializers named as kiln names
// them (namedParameters / namedBuffers), each primitive becomes ONNX operators (onnx/ops.ts), and the
// batch dimension is symbolic when traces at three batch sizes show that the graph follows it.

import type { DType } from '../ir/dtype.ts';
import type { Graph, Node } from '../ir/graph.ts';
import { cse } from '../compiler/passes/cse.ts';
import { dce } from '../compiler/passes/dce.ts';
import { simplify } from '../compiler/passes/simplify.ts';
import { sourceTextsLoaded, withLineText } from '../jit/source.ts';
import { trace, type ReturnTree } from '../jit/trace.ts';
import { noGrad } from '../runtime/autograd.ts';
import { givenLabel } from '../runtime/host.ts';
import { nodeFs, requireNode } from '../runtime/node.ts';
import { Tensor, full } from '../runtime/tensor.ts';
import { Module } from '../nn/module.ts';
import { OnnxExportError } from './error.ts';
import { evalDim, ONNX_ELEM, onnxLowerings, rawBytes, type Dim, type Emitter } from './ops.ts';
import { recognize } from './patterns.ts';
import { encodeModel, type AttrValue, type NodeProto, type TensorProto, type ValueInfo } from './proto.ts';

export interface ExportOptions {
  /** also write the model to this file (Node only); nothing is written when the export fails */
  path?: string;
  /** ONNX opset, 17 (default) to 20 */
  opset?: number;
  /** graph input names (default `input`, or `input0`, `input1`, ...) */
  inputNames?: readonly string[];
  /** graph output names (default `output`, `output0`, ... or the keys of a returned object) */
  outputNames?: readonly string[];
  /**
   * A symbolic batch dimension (dim 0 of every input whose dim 0 equals the first input's). Default:
   * wherever the trace allows, else static; true: required (an Error says why it is not possible);
   * false: every dimension as traced.
   */
  dynamicBatch?: boolean;
}

export { OnnxExportError };

/** A construct that is exportable only with static shapes (the exporter then tries a static export). */
class StaticOnly extends Error {}

type Forward = (...args: Tensor[]) => unknown;

/** IR versions by opset (onnx/docs/Versioning.md): 17-18 -> 8, 19-20 -> 9. */
const IR_VERSION: Record<number, number> = { 17: 8, 18: 8, 19: 9, 20: 9 };

/**
 * Traces `fnOrModule` on `exampleInputs` and returns the bytes of an ONNX model; writes them to
 * `opts.path` too. A Module is traced through its forward in eval mode (its modes are restored).
 */
export async function exportOnnx(fnOrModule: Forward | Module, exampleInputs: Tensor | readonly Tensor[], opts: ExportOptions = {}): Promise<Uint8Array> {
  const inputs = exampleInputs instanceof Tensor ? [exampleInputs] : [...exampleInputs];
  inputs.forEach((t, i) => {
    if (!(t instanceof Tensor)) throw new OnnxExportError(`onnx.export: example input ${i} is not a Tensor (got ${typeof t})`);
  });
  const opset = opts.opset ?? 17;
  if (!(opset in IR_VERSION)) throw new OnnxExportError(`onnx.export: opset ${opset} is not supported (kiln writes opsets 17 to 20)`);
  const inputNames = opts.inputNames ?? inputs.map((_, i) => (inputs.length === 1 ? 'input' : `input${i}`));
  if (inputNames.length !== inputs.length) throw new OnnxExportError(`onnx.export: ${inputNames.length} input names for ${inputs.length} inputs`);
  if (new Set(inputNames).size !== inputNames.length) throw new OnnxExportError(`onnx.export: input names must be distinct, got ${inputNames.join(', ')}`);

  let fn: Forward;
  let restore = (): void => {};
  if (fnOrModule instanceof Module) {
    const m = fnOrModule;
    // names every parameter and buffer (fc1.weight), which the initializers take
    m.namedParameters();
    m.namedBuffers();
    const modes = m.modules().map((s) => [s, s.training] as const);
    m.eval();
    restore = () => { for (const [s, mode] of modes) s.training = mode; };
    fn = (...xs) => (m.forward as Forward)(...xs);
  } else if (typeof fnOrModule === 'function') {
    fn = fnOrModule;
  } else {
    throw new OnnxExportError('onnx.export: expected a function or an nn.Module to export');
  }

  try {
    const model = await build(fn, inputs, inputNames, opset, opts);
    const bytes = encodeModel(model);
    if (opts.path !== undefined) requireNode(nodeFs, 'onnx.export({ path })').writeFileSync(opts.path, bytes);
    return bytes;
  } finally {
    restore();
  }
}

interface Traced { graph: Graph; returns: ReturnTree }

/** One trace of the forward with the batched inputs at batch size `batch` (null: the examples as given). */
function traceAt(fn: Forward, inputs: readonly Tensor[], batched: readonly boolean[], batch: number | null): Traced {
  const args = inputs.map((t, i) => (batch === null || !batched[i] ? t : full([batch, ...t.shape.slice(1)], 0, { dtype: t.dtype, device: t.device })));
  const t = noGrad(() => trace(fn, args, inputs[0]?.device));
  // the compile pipeline's generic clean-up: constants folded, identities and duplicates gone
  const g = dce(cse(dce(simplify(cse(simplify(t.graph))))));
  return { graph: g, returns: t.returns };
}

async function build(fn: Forward, inputs: readonly Tensor[], inputNames: readonly string[], opset: number, opts: ExportOptions) {
  const first = traceAt(fn, inputs, [], null);
  // (in a browser, the text of the user's lines is fetched: messages and doc strings show it)
  await sourceTextsLoaded();
  checkInference(first.graph);
  const outputNames = namesOfOutputs(first, opts.outputNames);
  const clash = outputNames.find((n) => inputNames.includes(n));
  if (clash !== undefined) throw new OnnxExportError(`onnx.export: '${clash}' names both an input and an output`);

  const b0 = inputs.find((t) => t.ndim > 0)?.shape[0];
  const batched = inputs.map((t) => b0 !== undefined && t.ndim > 0 && t.shape[0] === b0);
  const reasons: string[] = [];
  if (opts.dynamicBatch !== false && b0 !== undefined) {
    // Three sizes, so that a dimension following the batch is known to follow it linearly. A batch of
    // one can hide broadcasts (expanding [1, n] to [1, n] is no op), so a second base is tried.
    for (const base of b0 <= 1 ? [b0, 2] : [b0]) {
      const batches = [base, base + 1, base + 2];
      let traces: Traced[];
      try {
        traces = batches.map((b) => (b === b0 ? first : traceAt(fn, inputs, batched, b)));
      } catch (e) {
        // the forward itself refuses other batch sizes (a shape check): the model is static
        reasons.push(`traced at batch sizes ${batches.join(', ')}: ${e instanceof Error ? e.message : String(e)}`);
        continue;
      }
      const dims = await batchDims(traces.map((t) => t.graph), batches);
      if (typeof dims === 'string') { reasons.push(`traced at batch sizes ${batches.join(', ')}: ${dims}`); continue; }
      try {
        return await assemble(traces[0].graph, dims, batches, inputs, batched, inputNames, outputNames, opset);
      } catch (e) {
        if (!(e instanceof StaticOnly)) throw e;
        reasons.push(e.message);
      }
    }
  }
  if (opts.dynamicBatch === true) {
    throw new OnnxExportError(`onnx.export: the batch dimension cannot be dynamic: ${b0 === undefined ? 'no input has a dimension' : reasons.join('; ')}. Pass dynamicBatch: false for a static model`);
  }
  const dims = first.graph.nodes.map((n) => [...n.shape]);
  return assemble(first.graph, dims, [inputs[0]?.shape[0] ?? 1], inputs, inputs.map(() => false), inputNames, outputNames, opset);
}

/** Export traces inference: write-backs to captured tensors and gradients have no ONNX form. */
function checkInference(g: Graph): void {
  for (const o of g.outputs) {
    if (o.kind === 'return') continue;
    const at = o.node === null ? '' : where(g.node(o.node));
    if (o.kind === 'write') throw new OnnxExportError(`onnx.export: the traced forward writes into ${o.label} (an in-place update of a captured tensor${at}); an exported model computes outputs only: call the model in eval mode or drop the in-place update`);
    throw new OnnxExportError(`onnx.export: the traced forward sets ${o.label}${at}; export traces inference only, without backward()`);
  }
  if (!g.outputs.some((o) => o.kind === 'return')) throw new OnnxExportError('onnx.export: the traced function returns no tensor');
  for (const n of g.inputNodes) {
    if (n.attrs.kind === 'grad') throw new OnnxExportError(`onnx.export: the traced forward reads ${n.attrs.label}${where(n)}; export traces inference only`);
  }
}

/** " at file:line  code" of the user line that made a node */
const where = (n: Node): string => (n.source ? ` at ${withLineText(n.source)}` : '');

/** Output names: given, or the keys of a returned object, or output / output0, output1, ... */
function namesOfOutputs(t: Traced, given: readonly string[] | undefined): string[] {
  const leaves: [number, string][] = [];
  const walk = (r: ReturnTree, path: string): void => {
    if (r === null) return;
    if (typeof r === 'number') { leaves.push([r, path]); return; }
    if (Array.isArray(r)) { r.forEach((x, i) => walk(x, path ? `${path}.${i}` : `output${i}`)); return; }
    for (const [k, x] of Object.entries(r)) walk(x, path ? `${path}.${k}` : k);
  };
  walk(t.returns, '');
  leaves.sort((a, b) => a[0] - b[0]);
  const names = leaves.map(([, p]) => p || 'output');
  if (given) {
    if (given.length !== names.length) throw new OnnxExportError(`onnx.export: ${given.length} output names for ${names.length} returned tensors`);
    if (new Set(given).size !== given.length) throw new OnnxExportError(`onnx.export: output names must be distinct, got ${given.join(', ')}`);
    return [...given];
  }
  return names;
}

/**
 * Each node's dimensions as Dims, from graphs traced at `batches`: a dimension that changes with the
 * batch must change by the same step between the sizes (a * batch + c). A string says why not.
 */
async function batchDims(graphs: readonly Graph[], batches: readonly number[]): Promise<Dim[][] | string> {
  const [g0] = graphs;
  for (const g of graphs) {
    if (g.nodes.length !== g0.nodes.length) return `the graph has ${g0.nodes.length} nodes at one size and ${g.nodes.length} at another`;
    if (JSON.stringify(g.outputs.map((o) => o.node)) !== JSON.stringify(g0.outputs.map((o) => o.node))) return 'the outputs differ between sizes';
  }
  // a random seed is not exported (nor read: reading a host seed would draw from kiln's generator)
  const users = g0.users();
  const seedOnly = (n: Node): boolean => n.op === 'input' && users[n.id].every((u) => g0.node(u).op === 'random');
  const dims: Dim[][] = [];
  for (const n of g0.nodes) {
    const same = graphs.map((g) => g.nodes[n.id]);
    for (const m of same) {
      if (m.op !== n.op || m.dtype !== n.dtype || m.shape.length !== n.shape.length || m.inputs.join() !== n.inputs.join()) return `node %${n.id} (${n.op}${where(n)}) differs between sizes`;
      if (!seedOnly(n) && !(await sameAttrs(n, m))) {
        return `%${n.id} (${n.op}${where(n)}) changes with the batch size other than through its shape` + (n.op === 'input' ? ' (a tensor it reads differs)' : `: ${attrsText(n)} vs ${attrsText(m)}`);
      }
    }
    const d: Dim[] = [];
    for (let k = 0; k < n.shape.length; k++) {
      const v = same.map((m) => m.shape[k]);
      if (v.every((x) => x === v[0])) { d.push(v[0]); continue; }
      const a = (v[1] - v[0]) / (batches[1] - batches[0]), c = v[0] - a * batches[0];
      if (!Number.isInteger(a) || v.some((x, i) => x !== a * batches[i] + c)) return `dimension ${k} of %${n.id} (${n.op}${where(n)}) is ${v.join(', ')}: not linear in the batch`;
      d.push({ a, c });
    }
    dims.push(d);
  }
  return dims;
}

/**
 * Equal attributes except the result shape (which batchDims compares); inputs must be the same source.
 * A tensor the forward creates (kiln.tensor, arange) is a new capture in each trace: equal values suffice.
 */
async function sameAttrs(n: Node, m: Node): Promise<boolean> {
  if (n.op === 'input' && m.op === 'input') {
    const a = n.attrs, b = m.attrs;
    if (a.kind !== b.kind) return false;
    if (a.kind === 'arg' && b.kind === 'arg') return a.index === b.index;
    if (a.kind === 'capture' && b.kind === 'capture') {
      if (a.ref === b.ref) return true;
      if (n.shape.join() !== m.shape.join()) return false;
      const [x, y] = await Promise.all([(a.ref as Tensor).data(), (b.ref as Tensor).data()]);
      return x.every((v, i) => Object.is(v, y[i]));
    }
    return a.kind === 'host' && b.kind === 'host' ? a.read() === b.read() : false;
  }
  return attrsText(n) === attrsText(m);
}

const attrsText = (n: Node): string => JSON.stringify({ ...n.attrs, shape: undefined });

const dimName = (d: Dim): number | string => (typeof d === 'number' ? d : d.a === 1 && d.c === 0 ? 'batch' : `batch*${d.a}${d.c === 0 ? '' : d.c > 0 ? `+${d.c}` : d.c}`);

/** Builds the ONNX graph of `g` (traced at batches[0]) with dimensions `dims`. */
async function assemble(g: Graph, dims: readonly Dim[][], batches: readonly number[], examples: readonly Tensor[], batched: readonly boolean[], inputNames: readonly string[], outputNames: readonly string[], opset: number) {
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const graphInputs: ValueInfo[] = [];
  const used = new Set<string>([...inputNames, ...outputNames]);
  const value = new Map<number, string>();
  const fresh = (base: string): string => {
    let name = base;
    for (let k = 1; used.has(name); k++) name = `${base}_${k}`;
    used.add(name);
    return name;
  };
  const constant = (base: string, dims: readonly number[], dataType: TensorProto['dataType'], rawData: Uint8Array): string => {
    const name = fresh(base);
    initializers.push({ name, dims, dataType, rawData });
    return name;
  };
  const int64Cache = new Map<string, string>();
  const int64s = (values: readonly number[]): string => {
    const key = values.join(',');
    let name = int64Cache.get(key);
    if (!name) {
      const a = BigInt64Array.from(values, (v) => BigInt(v));
      name = constant(`const_i64_${int64Cache.size}`, [values.length], 7, new Uint8Array(a.buffer));
      int64Cache.set(key, name);
    }
    return name;
  };
  const scalarCache = new Map<string, string>();
  const scalar = (v: number, dtype: DType): string => {
    const key = `${dtype}:${v}`;
    let name = scalarCache.get(key);
    if (!name) {
      name = constant(`const_${dtype}_${scalarCache.size}`, [], ONNX_ELEM[dtype], rawBytes([v], dtype));
      scalarCache.set(key, name);
    }
    return name;
  };

  let current: Node | null = null;
  const sourceOf = (n: Node | null): string => (n ? `${n.op} %${n.id}${where(n)}` : 'the graph');
  const emitNode = (opType: string, ins: readonly string[], attrs?: Record<string, AttrValue>): string => {
    const out = fresh(current ? `${current.op}_${current.id}` : opType);
    nodes.push({ opType, inputs: ins, outputs: [out], name: `${opType}_${nodes.length}`, attrs, docString: current?.source && withLineText(current.source) });
    return out;
  };

  // the batch size at run time, as a 1-D int64 tensor, read from the first batched input
  const firstBatched = batched.indexOf(true);
  const batchTerms = new Map<string, string>();
  const batchTerm = (d: { a: number; c: number }): string => {
    const key = `${d.a},${d.c}`;
    let name = batchTerms.get(key);
    if (!name) {
      let v = batchTerms.get('1,0');
      if (!v) {
        v = emitNode('Shape', [inputNames[firstBatched]], { start: { kind: 'int', value: 0 }, end: { kind: 'int', value: 1 } });
        batchTerms.set('1,0', v);
      }
      if (d.a !== 1) v = emitNode('Mul', [v, int64s([d.a])]);
      if (d.c !== 0) v = emitNode('Add', [v, int64s([d.c])]);
      name = v;
      batchTerms.set(key, name);
    }
    return name;
  };
  const shapeCache = new Map<string, string>();
  const shape = (ds: readonly Dim[]): string => {
    if (ds.every((d): d is number => typeof d === 'number')) return int64s(ds);
    const key = JSON.stringify(ds);
    let name = shapeCache.get(key);
    if (!name) {
      // runs of static dims as constants, batch terms computed; one Concat
      const parts: string[] = [];
      let run: number[] = [];
      for (const d of ds) {
        if (typeof d === 'number') { run.push(d); continue; }
        if (run.length) { parts.push(int64s(run)); run = []; }
        parts.push(batchTerm(d));
      }
      if (run.length) parts.push(int64s(run));
      name = emitNode('Concat', parts, { axis: { kind: 'int', value: 0 } });
      shapeCache.set(key, name);
    }
    return name;
  };

  const fail = (reason: string): never => { throw new OnnxExportError(`onnx.export: ${sourceOf(current)}: ${reason}`); };
  const emitter: Emitter = {
    opset,
    batches,
    dtypeOf: (id) => g.node(id).dtype,
    dimsOf: (id) => dims[id],
    node: emitNode,
    cast: (x, from, to) => (from === to ? x : emitNode('Cast', [x], { to: { kind: 'int', value: ONNX_ELEM[to] } })),
    int64s,
    scalar,
    shape,
    unsupported: fail,
    staticOnly: (reason) => { throw new StaticOnly(`${sourceOf(current)}: ${reason}`); },
  };

  // graph inputs (an argument the forward never reads is still an input of the model)
  g.inputNodes.forEach((n) => { if (n.attrs.kind === 'arg') value.set(n.id, inputNames[n.attrs.index]); });
  examples.forEach((t, i) => {
    const ds = t.shape.map((d, k) => (k === 0 && batched[i] ? 'batch' : d));
    graphInputs.push({ name: inputNames[i], elemType: ONNX_ELEM[t.dtype], dims: ds });
  });

  // composites (Gemm, Softmax) and broadcasts left to ONNX; then what the outputs need (random's
  // seed is not: ONNX Runtime draws its own numbers)
  const rw = recognize(g, dims);
  const operands = (n: Node): readonly number[] => rw.composites.get(n.id)?.inputs ?? (n.op === 'random' ? [] : rw.operands(n));
  const needed = new Array<boolean>(g.nodes.length).fill(false);
  for (const o of g.outputs) if (o.node !== null) needed[o.node] = true;
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    if (needed[i]) for (const x of operands(g.nodes[i])) needed[x] = true;
  }

  for (const n of g.nodes) {
    if (!needed[n.id] || value.has(n.id)) continue;
    current = n;
    if (n.op === 'input') {
      const src = n.attrs;
      if (src.kind === 'capture') {
        const t = src.ref as Tensor;
        const data = await t.data();
        value.set(n.id, constant(givenLabel(t) ?? `const_${n.id}`, n.shape, ONNX_ELEM[n.dtype], rawBytes(data, n.dtype)));
      } else if (src.kind === 'host') {
        // a host value (a hyper-parameter) is baked in with its value at export time
        value.set(n.id, constant(`host_${n.id}`, [], ONNX_ELEM[n.dtype], rawBytes([src.read()], n.dtype)));
      } else {
        fail(`${src.kind === 'grad' ? src.label : 'this input'} has no ONNX form`);
      }
      continue;
    }
    const ins = operands(n), names = ins.map((i) => value.get(i)!);
    const composite = rw.composites.get(n.id);
    if (n.op === 'full' && rw.scalars.has(n.id)) {
      value.set(n.id, scalar(n.attrs.value, n.dtype));
    } else if (composite?.opType === 'Gemm') {
      value.set(n.id, emitNode('Gemm', names, composite.transB ? { transB: { kind: 'int', value: 1 } } : undefined));
    } else if (composite?.opType === 'Gather') {
      const [data, index] = names, oneD = dims[ins[1]].length === 1;
      value.set(n.id, emitNode('Gather', [data, oneD ? index : emitNode('Reshape', [index, int64s([-1])])], { axis: { kind: 'int', value: composite.axis } }));
    } else if (composite?.opType === 'LayerNormalization') {
      value.set(n.id, emitNode('LayerNormalization', names, { axis: { kind: 'int', value: composite.axis }, epsilon: { kind: 'float', value: composite.epsilon } }));
    } else if (composite) {
      value.set(n.id, emitNode(composite.opType, names, { axis: { kind: 'int', value: composite.axis } }));
    } else {
      // (an elementwise node may read an operand unexpanded: same dtype, broadcast by ONNX)
      const lower = onnxLowerings[n.op] as (e: Emitter, n: Node, x: readonly string[]) => string;
      value.set(n.id, lower(emitter, { ...n, inputs: ins } as Node, names));
    }
  }
  current = null;

  // outputs: a value computed by a node takes the output's name; an input, a weight or a value
  // returned twice goes through an Identity
  const graphOutputs: ValueInfo[] = [];
  const produced = new Set(nodes.flatMap((n) => n.outputs));
  const renamed = new Map<string, string>();
  g.outputs.filter((o) => o.kind === 'return').forEach((o, i) => {
    const n = g.node(o.node!), v = value.get(n.id)!;
    if (produced.has(v) && !renamed.has(v)) renamed.set(v, outputNames[i]);
    else nodes.push({ opType: 'Identity', inputs: [renamed.get(v) ?? v], outputs: [outputNames[i]], name: `output_${i}` });
    graphOutputs.push({ name: outputNames[i], elemType: ONNX_ELEM[n.dtype], dims: dims[n.id].map(dimName) });
  });
  const rename = (x: string): string => renamed.get(x) ?? x;
  const finalNodes = nodes.map((n) => ({ ...n, inputs: n.inputs.map(rename), outputs: n.outputs.map(rename) }));

  const dynamic = batched.some((b) => b);
  return {
    irVersion: IR_VERSION[opset],
    opset,
    producerName: 'kiln',
    producerVersion: '0.1.0',
    docString: dynamic ? 'exported by kiln.onnx.export; dim "batch" is the batch size' : `exported by kiln.onnx.export; static shapes (${graphInputs.map((v) => `[${v.dims.join(", ")}]`).join(', ')})`,
    graph: { name: 'kiln', nodes: finalNodes, initializers, inputs: graphInputs, outputs: graphOutputs },
  };
}
