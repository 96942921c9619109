// The IR: a static graph of primitive applications. A compiled step is one Graph whose inputs are
// the step's arguments, captured tensors (parameters, optimizer state, their .grad) and host scalars,
// and whose outputs are returned values plus write-backs to captured tensors.

import type { DType } from './dtype.ts';
import type { PrimAttrs, Primitive } from './primitives.ts';
import { fmt } from './shape.ts';
import type { View } from './view.ts';

export type Phase = 'forward' | 'backward' | 'update';

/**
 * Where an input node's value comes from at call time. `ref` is a runtime object the IR does not inspect;
 * a capture records the view it had when traced (a guard keeps it so), which is how fusion reads it.
 */
export type InputSource =
  | { kind: 'arg'; index: number }
  | { kind: 'capture'; ref: unknown; label: string; view: View }
  | { kind: 'grad'; ref: unknown; label: string }
  | { kind: 'host'; read: () => number; label: string };

export type NodeOp = Primitive | 'input';

interface NodeBase {
  readonly id: number;
  readonly inputs: readonly number[];
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly phase: Phase;
  /** the user source line that created it ("file:line"; listings add the code where it is known) */
  readonly source?: string;
}
/** A node of one op: its attributes are that primitive's (an input's are its InputSource). */
export type NodeOf<O extends NodeOp> = NodeBase & { readonly op: O; readonly attrs: O extends Primitive ? PrimAttrs[O] : InputSource };
/** An IR node: a union discriminated by `op`, so `n.op === 'permute'` types `n.attrs` as permute's. */
export type Node = { [O in NodeOp]: NodeOf<O> }[NodeOp];
export type InputNode = NodeOf<'input'>;
/** A node before the graph numbers it (Omit applied to each member of the union). */
export type NodeInit = Node extends infer N ? (N extends Node ? Omit<N, 'id'> : never) : never;

/**
 * A node of primitive `op` (generic code: the tracer, rewrites that keep an op): the one place where
 * TypeScript cannot see that `op` and `attrs` belong together.
 */
export function primNode<P extends Primitive>(op: P, attrs: PrimAttrs[P], rest: Omit<NodeBase, 'id'>): NodeInit {
  return { ...rest, op, attrs } as NodeInit;
}

/** What happens with an output after a call: returned, written into a captured tensor, or set as its .grad. */
export type OutputKind = 'return' | 'write' | 'grad';
export interface GraphOutput {
  kind: OutputKind;
  /** the node whose value is the output; null for a grad set to null */
  node: number | null;
  /** the runtime object written to (write, grad) */
  ref?: unknown;
  label: string;
}

export class Graph {
  nodes: Node[] = [];
  outputs: GraphOutput[] = [];

  add(n: NodeInit): Node {
    const node: Node = { ...n, id: this.nodes.length };
    this.nodes.push(node);
    return node;
  }
  node(id: number): Node { return this.nodes[id]; }
  get inputNodes(): InputNode[] { return this.nodes.filter((n): n is InputNode => n.op === 'input'); }

  /** Consumers of each node (by id), outputs not counted. */
  users(): number[][] {
    const u: number[][] = this.nodes.map(() => []);
    for (const n of this.nodes) for (const i of n.inputs) u[i].push(n.id);
    return u;
  }

  /** A readable listing: one node per line with op, shape, dtype, inputs and source line. */
  toString(filter?: (n: Node) => boolean, title = 'graph'): string {
    const nodes = filter ? this.nodes.filter(filter) : this.nodes;
    const lines = [`${title}: ${nodes.length} nodes`];
    for (const n of nodes) lines.push(formatNode(n));
    const outs = this.outputs.filter((o) => o.node === null || !filter || filter(this.nodes[o.node]));
    for (const o of outs) lines.push(`  ${o.kind.padEnd(6)} ${o.label} <- ${o.node === null ? 'null' : '%' + o.node}`);
    return lines.join('\n');
  }
}

function formatAttrs(n: Node): string {
  if (n.op === 'input') {
    const s = n.attrs;
    return s.kind === 'arg' ? `arg ${s.index}` : `${s.kind} ${s.label}`;
  }
  const entries = Object.entries(n.attrs);
  return entries.map(([k, v]) => `${k}=${Array.isArray(v) ? fmt(v) : String(v)}`).join(' ');
}

// How listings show a node's source label. jit's provenance module (source.ts) sets it to add the
// line's code, which a browser has only once it has fetched the user's file, after tracing.
let sourceDisplay = (label: string): string => label;
export function setSourceDisplay(display: (label: string) => string): void {
  sourceDisplay = display;
}
/** A source label as listings show it ("file:line  code" where the code is known). */
export const displaySource = (label: string): string => sourceDisplay(label);

export function formatNode(n: Node): string {
  const args = n.inputs.map((i) => '%' + i).join(', ');
  const attrs = formatAttrs(n);
  const call = `${n.op}(${[args, attrs].filter(Boolean).join('; ')})`;
  const type = `${n.dtype}${fmt(n.shape)}`;
  const head = `  %${n.id} = ${call}`.padEnd(48) + ` : ${type}`;
  return n.source ? `${head.padEnd(72)}  # ${displaySource(n.source)}` : head;
}
