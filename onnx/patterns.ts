// Composites the exporter recognizes in a traced forward so that the ONNX graph reads like the model:
// broadcasts that ONNX's own broadcasting makes unnecessary (elementwise ops, MatMul's batch dims),
// x @ W^T + b as Gemm, softmax and log-softmax as Softmax / LogSoftmax, a layer norm with a scale as
// LayerNormalization, indexSelect (an embedding lookup) as Gather. kiln composes these from primitives
// (runtime/tensor.ts, F.linear), so each is a pattern over primitive nodes; each rewrite computes the
// same values as the primitives it replaces.

import type { Graph, Node } from '../ir/graph.ts';
import { primitiveInfo } from '../ir/primitives.ts';
import type { Dim } from './ops.ts';

export type Composite =
  /** inputs: x [M, K], w, bias (broadcast to [M, N]); transB when w is W^T of a [N, K] W */
  | { opType: 'Gemm'; inputs: number[]; transB: boolean }
  | { opType: 'Softmax' | 'LogSoftmax'; inputs: number[]; axis: number }
  /** inputs: data, indices (flattened; taken whole along the other axes: an embedding lookup, indexSelect) */
  | { opType: 'Gather'; inputs: number[]; axis: number }
  /** inputs: x, scale[, bias]; normalizes over axis..last */
  | { opType: 'LayerNormalization'; inputs: number[]; axis: number; epsilon: number };

export interface Rewrites {
  /** nodes computed by one composite ONNX op from these kiln values */
  composites: Map<number, Composite>;
  /** the operands a node reads (an expand feeding a broadcasting op is read unexpanded) */
  operands: (n: Node) => readonly number[];
  /** filled tensors (`full`) read only by broadcasting ops: one 0-d constant suffices */
  scalars: ReadonlySet<number>;
}

const key = (d: Dim): string => (typeof d === 'number' ? String(d) : `${d.a}b+${d.c}`);
const broadcasting = (n: Node): boolean => {
  const kind = n.op === 'input' ? null : primitiveInfo[n.op].kind;
  return kind === 'binary' || kind === 'compare' || kind === 'select';
};

/** Finds the rewrites in `g`, whose nodes have dimensions `dims`. */
export function recognize(g: Graph, dims: readonly (readonly Dim[])[]): Rewrites {
  const users = g.users();
  const outputs = new Set(g.outputs.map((o) => o.node));
  const scalars = new Set(g.nodes.filter((n) => n.op === 'full' && !outputs.has(n.id) && users[n.id].every((u) => broadcasting(g.node(u)))).map((n) => n.id));
  const dimsOf = (id: number): readonly Dim[] => (scalars.has(id) ? [] : dims[id]);
  // ONNX broadcasts the operands back to the output when each output axis is full in some operand
  const covers = (n: Node, srcs: readonly number[]): boolean => {
    const out = dims[n.id];
    return out.every((d, k) => key(d) === '1' || srcs.some((s) => {
      const sd = dimsOf(s), at = k - (out.length - sd.length);
      return at >= 0 && key(sd[at]) === key(d);
    }));
  };
  const unexpanded = (n: Node): number[] => n.inputs.map((i) => { const p = g.node(i); return p.op === 'expand' ? p.inputs[0] : i; });
  // a constant stays a full tensor where its op would not otherwise get the output's shape
  for (let changed = true; changed;) {
    changed = false;
    for (const n of g.nodes) {
      if (!broadcasting(n) || covers(n, unexpanded(n)) || covers(n, n.inputs)) continue;
      for (const i of n.inputs) if (scalars.delete(i)) changed = true;
    }
  }
  const operandsOf = new Map<number, number[]>();
  for (const n of g.nodes) {
    if (!broadcasting(n)) continue;
    const srcs = unexpanded(n);
    if (srcs.some((s, k) => s !== n.inputs[k]) && covers(n, srcs)) operandsOf.set(n.id, srcs);
  }
  // MatMul broadcasts batch dims too: a weight expanded over the batch (x @ W on [B, T, C]) is read as is
  for (const n of g.nodes) {
    if (n.op !== 'matmul') continue;
    const srcs = n.inputs.map((i) => {
      const p = g.node(i), s = p.op === 'expand' ? p.inputs[0] : i;
      return dims[s].length >= 2 && dims[s].slice(-2).map(key).join() === dims[i].slice(-2).map(key).join() ? s : i;
    });
    const batch = dims[n.id].slice(0, -2);
    const full = batch.every((d, k) => key(d) === '1' || srcs.some((s) => {
      const sb = dims[s].slice(0, -2), at = k - (batch.length - sb.length);
      return at >= 0 && key(sb[at]) === key(d);
    }));
    if (full && srcs.some((s, k) => s !== n.inputs[k])) operandsOf.set(n.id, srcs);
  }
  const operands = (n: Node): readonly number[] => operandsOf.get(n.id) ?? n.inputs;
  const node = (id: number): Node => g.node(id);
  const float = (...ids: number[]): boolean => ids.every((i) => node(i).dtype === 'float32');
  /** `m = max(x, [axis])` and `u = x - m`: returns x and axis */
  const shifted = (u: Node): { x: number; axis: number } | null => {
    if (u.op !== 'sub') return null;
    const [x, mid] = operands(u), m = node(mid);
    if (m.op !== 'max' || m.attrs.axes.length !== 1 || m.inputs[0] !== x) return null;
    return { x, axis: m.attrs.axes[0] };
  };

  const constant = (id: number): number | null => { const c = node(id); return c.op === 'full' ? c.attrs.value : null; };
  /** `sum(x, axes) / count` (Tensor.mean): returns x and the axes */
  const meanOf = (id: number): { x: number; axes: number[] } | null => {
    const dv = node(id);
    if (dv.op !== 'div') return null;
    const [sid, cid] = operands(dv), sm = node(sid);
    if (sm.op !== 'sum') return null;
    const count = sm.attrs.axes.reduce((k, a) => k * node(sm.inputs[0]).shape[a], 1);
    return constant(cid) === count ? { x: sm.inputs[0], axes: sm.attrs.axes } : null;
  };
  /** `(x - mean) * rsqrt(mean((x - mean)^2) + eps)` over the trailing axes (layer norm without affine) */
  const normalized = (n: Node): { x: number; axis: number; epsilon: number } | null => {
    if (n.op !== 'mul') return null;
    for (const [did, rid] of [operands(n), [...operands(n)].reverse()]) {
      const d = node(did), r = node(rid);
      if (d.op !== 'sub' || r.op !== 'rsqrt') continue;
      const a = node(r.inputs[0]);
      if (a.op !== 'add') continue;
      const [p, q] = operands(a), eps = constant(q) ?? constant(p), v = meanOf(constant(q) !== null ? p : q);
      const sq = v && node(v.x);
      const [x, mid] = operands(d), m = meanOf(mid);
      if (eps === null || !v || !sq || sq.op !== 'mul' || sq.inputs[0] !== did || sq.inputs[1] !== did || !m || m.x !== x) continue;
      const rank = n.shape.length, axes = [...m.axes].sort((i, j) => i - j);
      const trailing = axes.every((ax, i) => ax === rank - axes.length + i);
      if (trailing && axes.join() === [...v.axes].sort((i, j) => i - j).join()) return { x, axis: axes[0], epsilon: eps };
    }
    return null;
  };
  /** a scale or bias of the normalized shape (x's dims from axis on) */
  const affine = (id: number, x: number, axis: number): boolean =>
    float(id) && dims[id].map(key).join() === dims[x].slice(axis).map(key).join();

  const composites = new Map<number, Composite>();
  for (const n of g.nodes) {
    if (n.op === 'add' && n.shape.length === 2 && float(n.id)) {
      // x @ W^T + b (F.linear): one Gemm
      const [p, q] = operands(n);
      for (const [mid, bias] of [[p, q], [q, p]]) {
        const m = node(mid);
        if (m.op !== 'matmul' || !float(...m.inputs, bias) || dims[bias].length > 2) continue;
        const w = node(m.inputs[1]);
        const transB = w.op === 'permute' && w.shape.length === 2 && w.attrs.perm[0] === 1;
        composites.set(n.id, { opType: 'Gemm', inputs: [m.inputs[0], transB ? w.inputs[0] : w.id, bias], transB });
        break;
      }
    }
    if (n.op === 'gather') {
      // x.indexSelect(axis, idx): a gather whose index is idx broadcast along every other axis
      const [x, iid] = n.inputs, ix = node(iid), axis = n.attrs.axis;
      if (ix.op !== 'expand') continue;
      const src = ix.inputs[0], sd = dims[src], xd = dims[x], od = dims[n.id];
      const whole = sd.length === od.length && od.every((d, k) => k === axis || (key(sd[k]) === '1' && key(d) === key(xd[k])));
      if (!whole) continue;
      // (the exporter flattens the index: the tensor reshaped into the broadcast index will do)
      const r = node(src);
      composites.set(n.id, { opType: 'Gather', inputs: [x, r.op === 'reshape' ? r.inputs[0] : src], axis });
    }
    if ((n.op === 'mul' || n.op === 'add') && float(n.id)) {
      // layerNorm(x) * scale [+ bias]: LayerNormalization (ONNX requires the scale)
      const [p, q] = operands(n);
      for (const [inner, param] of [[p, q], [q, p]]) {
        const scaled = n.op === 'add' ? node(inner) : n;
        if (scaled.op !== 'mul') continue;
        const [u, w] = n.op === 'add' ? operands(scaled) : [inner, param];
        for (const [core, scale] of [[u, w], [w, u]]) {
          const ln = normalized(node(core));
          if (!ln || !affine(scale, ln.x, ln.axis) || (n.op === 'add' && !affine(param, ln.x, ln.axis))) continue;
          composites.set(n.id, { opType: 'LayerNormalization', inputs: n.op === 'add' ? [ln.x, scale, param] : [ln.x, scale], axis: ln.axis, epsilon: ln.epsilon });
        }
      }
    }
    if (n.op === 'div' && float(n.id)) {
      // exp(x - max(x)) / sum(exp(x - max(x))) over one axis (Tensor.softmax)
      const [eid, sid] = operands(n), e = node(eid), s = node(sid);
      if (e.op !== 'exp' || s.op !== 'sum' || s.inputs[0] !== eid || s.attrs.axes.length !== 1) continue;
      const sh = shifted(node(e.inputs[0]));
      if (sh && sh.axis === s.attrs.axes[0]) composites.set(n.id, { opType: 'Softmax', inputs: [sh.x], axis: sh.axis });
    } else if (n.op === 'sub' && float(n.id)) {
      // (x - max(x)) - log(sum(exp(x - max(x)))) over one axis (Tensor.logSoftmax)
      const [uid, lid] = operands(n), l = node(lid);
      if (l.op !== 'log') continue;
      const s = node(l.inputs[0]);
      if (s.op !== 'sum' || s.attrs.axes.length !== 1) continue;
      const e = node(s.inputs[0]);
      if (e.op !== 'exp' || e.inputs[0] !== uid) continue;
      const sh = shifted(node(uid));
      if (sh && sh.axis === s.attrs.axes[0]) composites.set(n.id, { opType: 'LogSoftmax', inputs: [sh.x], axis: sh.axis });
    }
  }
  return { composites, operands, scalars };
}
