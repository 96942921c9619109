// The IR verifier: checks that a graph is well formed, so a pass that breaks it is named at once
// instead of surfacing later as a wrong kernel. The compile pipeline runs it after every pass when
// KILN_VERIFY=1 (the test suite sets it). Checks: ids match positions and inputs come before their
// users (topological order), each node's shape and dtype are what its primitive's shape rule says,
// input nodes have no operands, and every output names an existing node.

import type { Graph, Node } from './graph.ts';
import { formatNode } from './graph.ts';
import { shapeRules, type AVal, type PrimAttrs, type Primitive } from './primitives.ts';
import { fmt, sameShape } from './shape.ts';

/** The problems found in `g`, one line each; empty when the graph is well formed. */
export function verifyProblems(g: Graph): string[] {
  const problems: string[] = [];
  g.nodes.forEach((n, i) => {
    const at = (msg: string) => problems.push(`${msg}\n  ${formatNode(n).trim()}`);
    if (n.id !== i) at(`node at position ${i} has id %${n.id}`);
    for (const x of n.inputs) {
      if (!Number.isInteger(x) || x < 0 || x >= i) at(`%${n.id} reads %${x}, which is not an earlier node (graph not in topological order)`);
    }
    if (n.op === 'input') {
      if (n.inputs.length) at(`input %${n.id} has operands`);
      return;
    }
    if (n.inputs.some((x) => !(x >= 0 && x < i))) return;
    const expected = ruleResult(n, n.inputs.map((x) => g.nodes[x]));
    if (typeof expected === 'string') at(`%${n.id}: the shape rule of ${n.op} rejects its operands: ${expected}`);
    else if (!sameShape(expected.shape, n.shape) || expected.dtype !== n.dtype) {
      at(`%${n.id}: ${n.op} should give ${expected.dtype}${fmt(expected.shape)}, the node says ${n.dtype}${fmt(n.shape)}`);
    }
  });
  g.outputs.forEach((o, i) => {
    if (o.node === null) {
      if (o.kind !== 'grad') problems.push(`output ${i} (${o.kind} ${o.label}) has no node; only a grad output may be null`);
    } else if (!(Number.isInteger(o.node) && o.node >= 0 && o.node < g.nodes.length)) {
      problems.push(`output ${i} (${o.kind} ${o.label}) names %${o.node}, which does not exist (${g.nodes.length} nodes)`);
    }
  });
  return problems;
}

function ruleResult(n: Node, inputs: readonly Node[]): AVal | string {
  const rule = shapeRules[n.op as Primitive] as (xs: AVal[], attrs: PrimAttrs[Primitive]) => AVal;
  try {
    return rule(inputs.map((x) => ({ shape: x.shape, dtype: x.dtype })), n.attrs as PrimAttrs[Primitive]);
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** Throws one Error listing every problem in `g`; `stage` names the pass that produced it. */
export function verify(g: Graph, stage: string): void {
  const problems = verifyProblems(g);
  if (problems.length) throw new Error(`IR verifier: the graph after '${stage}' is malformed (${problems.length} problem(s)):\n${problems.join('\n')}`);
}
