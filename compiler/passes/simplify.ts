// Constant folding and algebraic simplification: x*1, x+0, x-0, x/1, x^1, neg(neg x), copies and
// identity casts/views disappear; ops on constants and broadcasts of constants become constants.

import type { Graph, Node } from '../../ir/graph.ts';
import type { DType } from '../../ir/dtype.ts';
import { isElementwise, isUnary, isView, type BinaryOp, type CompareOp } from '../../ir/primitives.ts';
import { sameShape } from '../../ir/shape.ts';
import { JS_SELECT, jsSpelling } from '../codegen/spelling-js.ts';
import { rewrite, type NodeInit } from './rewrite.ts';

const evaluators = new Map<string, (...xs: number[]) => number>();
/** Evaluates one scalar op with the JS spelling table, so folding agrees with generated code. */
function evaluate(op: string, xs: number[], dtype: DType): number {
  const key = `${op}|${dtype}`;
  let f = evaluators.get(key);
  if (!f) {
    // `dtype` is the result's: the compute type of arithmetic (float32 rounds as generated code does, float64
    // keeps every digit); comparisons ignore it
    const body = isUnary(op) ? jsSpelling.unary[op]('a', dtype) : op === 'where' ? jsSpelling.where('a', 'b', 'c') : jsSpelling.binary[op as BinaryOp | CompareOp]('a', 'b', dtype);
    f = new Function('a', 'b', 'c', `${JS_SELECT} return ${body};`) as (...xs: number[]) => number;
    evaluators.set(key, f);
  }
  return f(...xs);
}

function roundTo(dtype: DType, v: number): number {
  if (dtype === 'float64') return v;
  if (dtype === 'float32') return Math.fround(v);
  if (dtype === 'int32') return v | 0;
  return v !== 0 ? 1 : 0;
}

/** True when `perm` swaps the last two dims and keeps the others. */
const swapsLastTwo = (perm: readonly number[]): boolean =>
  perm.length >= 2 && perm.every((p, i) => (i < perm.length - 2 ? p === i : p === (i === perm.length - 1 ? perm.length - 2 : perm.length - 1)));

export function simplify(g: Graph): Graph {
  const users = g.users();
  return rewrite(g, (n, out, old) => {
    const inp = (i: number): Node => out.node(n.inputs[i]);
    const fullValue = (node: Node): number | null => (node.op === 'full' ? node.attrs.value : null);
    const constant = (value: number): number => out.add({ ...n, op: 'full', inputs: [], attrs: { shape: [...n.shape], value: roundTo(n.dtype, value), dtype: n.dtype } }).id;
    /** `x` can stand for this node when it has the same shape and dtype. */
    const same = (x: Node): boolean => sameShape(x.shape, n.shape) && x.dtype === n.dtype;

    if (n.op === 'input' || n.op === 'full') return out.add(n).id;
    if (n.op === 'copy' && same(inp(0))) return n.inputs[0];
    if (n.op === 'cast' && same(inp(0))) return n.inputs[0];

    // Views: identities vanish, views of views compose, views of constants are constants.
    if (isView(n.op)) {
      const x = inp(0);
      if (fullValue(x) !== null) return constant(fullValue(x)!);
      if (n.op !== 'slice' && sameShape(x.shape, n.shape) && (n.op !== 'permute' || n.attrs.perm.every((p, i) => p === i))) return x.id;
      if (n.op === 'reshape' && x.op === 'reshape') return out.add({ ...n, inputs: x.inputs }).id;
      // (a @ b)^T = b^T @ a^T: computing the transposed product directly lets its consumer fuse
      // into the matmul's epilogue (the weight gradient of a Linear layer and its update).
      if (n.op === 'permute' && x.op === 'matmul' && swapsLastTwo(n.attrs.perm) && users[old.inputs[0]].length === 1) {
        const [a, b] = x.inputs.map((i) => out.node(i));
        const t = (y: Node): number => out.add({ ...n, op: 'permute', inputs: [y.id], shape: [...y.shape.slice(0, -2), y.shape.at(-1)!, y.shape.at(-2)!], dtype: y.dtype }).id;
        return out.add({ ...x, inputs: [t(b), t(a)], shape: n.shape, phase: n.phase, source: n.source }).id;
      }
      if (n.op === 'permute' && x.op === 'permute') {
        const inner = x.attrs.perm, outer = n.attrs.perm;
        const perm = outer.map((p) => inner[p]);
        if (perm.every((p, i) => p === i)) return x.inputs[0];
        return out.add({ ...n, inputs: x.inputs, attrs: { perm } }).id;
      }
      return out.add(n).id;
    }

    if (isElementwise(n.op)) {
      const xs = n.inputs.map((_, i) => inp(i));
      const values = xs.map(fullValue);
      if (values.every((v) => v !== null)) {
        return constant(n.op === 'cast' ? values[0]! : evaluate(n.op, values as number[], n.dtype));
      }
      const [a, b] = xs;
      const [va, vb] = values;
      switch (n.op) {
        case 'add': if (vb === 0 && same(a)) return a.id; if (va === 0 && same(b)) return b.id; break;
        case 'sub': if (vb === 0 && same(a)) return a.id; break;
        case 'mul': if (vb === 1 && same(a)) return a.id; if (va === 1 && same(b)) return b.id; break;
        case 'div': if (vb === 1 && same(a)) return a.id; break;
        case 'pow': if (vb === 1 && same(a)) return a.id; break;
        case 'neg': if (a.op === 'neg' && same(out.node(a.inputs[0]))) return a.inputs[0]; break;
        case 'where': if (va !== null) { const pick = va !== 0 ? xs[1] : xs[2]; if (same(pick)) return pick.id; } break;
      }
    }
    return out.add(n as NodeInit).id;
  });
}
