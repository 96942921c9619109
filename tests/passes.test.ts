// Unit tests of the graph passes (compiler/passes/*): simplify (algebraic identities, identity
// casts/copies/views, constant folding incl. broadcasts of constants), CSE, DCE and memory
// planning, on hand-built graphs and on graphs traced from ordinary tensor code; plus the same
// effects seen end to end through compile(...).lower().
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { Graph, type Node, type NodeInit } from '../ir/graph.ts';
import type { DType } from '../ir/dtype.ts';
import { trace } from '../jit/trace.ts';
import { simplify } from '../compiler/passes/simplify.ts';
import { cse } from '../compiler/passes/cse.ts';
import { dce } from '../compiler/passes/dce.ts';
import { schedule } from '../compiler/passes/fusion.ts';
import { planMemory } from '../compiler/passes/memory.ts';
import { contiguousView, type View } from '../ir/view.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values } from './golden.ts';

type Tensor = kiln.Tensor;

// ---- a tiny graph builder ----
class B {
  g = new Graph();
  input(shape: number[], dtype: DType = 'float32', index = 0): number {
    return this.g.add({ op: 'input', attrs: { kind: 'arg', index }, inputs: [], shape, dtype, phase: 'forward' }).id;
  }
  full(shape: number[], value: number, dtype: DType = 'float32'): number {
    return this.g.add({ op: 'full', attrs: { shape, value, dtype }, inputs: [], shape, dtype, phase: 'forward' }).id;
  }
  op(op: Node['op'], inputs: number[], attrs: object = {}, shape?: number[], dtype?: DType): number {
    const first = this.g.node(inputs[0]);
    return this.g.add({ op, attrs: attrs as never, inputs, shape: shape ?? [...first.shape], dtype: dtype ?? first.dtype, phase: 'forward' } as NodeInit).id;
  }
  ret(...ids: number[]): Graph {
    ids.forEach((id, i) => this.g.outputs.push({ kind: 'return', node: id, label: `return ${i}` }));
    return this.g;
  }
}

const ops = (g: Graph): string[] => g.nodes.map((n) => n.op);
const outNode = (g: Graph, i = 0): Node => g.node(g.outputs[i].node!);
/** simplify then dce: what the pipeline keeps. */
const clean = (g: Graph): Graph => dce(simplify(g));

describe('simplify', () => {
  it('x*1, 1*x, x+0, 0+x, x-0, x/1, x^1 are x', () => {
    for (const [op, c, left] of [['mul', 1, false], ['mul', 1, true], ['add', 0, false], ['add', 0, true], ['sub', 0, false], ['div', 1, false], ['pow', 1, false]] as const) {
      const b = new B();
      const x = b.input([2, 3]);
      const k = b.full([2, 3], c);
      const g = clean(b.ret(b.op(op, left ? [k, x] : [x, k])));
      expect(ops(g), `${left ? `${c} ${op} x` : `x ${op} ${c}`}`).toEqual(['input']);
      expect(outNode(g).op).toBe('input');
    }
  });

  it('does not remove 0-x, 1/x, x*0 or x^2 as identities', () => {
    for (const [op, c, left] of [['sub', 0, true], ['div', 1, true], ['pow', 2, false]] as const) {
      const b = new B();
      const x = b.input([4]);
      const k = b.full([4], c);
      const g = clean(b.ret(b.op(op, left ? [k, x] : [x, k])));
      expect(outNode(g).op).toBe(op);
    }
  });

  it('x*1 through a broadcast constant (expand of a 0-d full, as traced code produces) is x', () => {
    const b = new B();
    const x = b.input([2, 3]);
    const one = b.op('expand', [b.full([], 1)], { shape: [2, 3] }, [2, 3]);
    const g = clean(b.ret(b.op('mul', [x, one])));
    expect(ops(g)).toEqual(['input']);
  });

  it('x*1 is kept when the constant broadcasts x to a larger shape (not an identity)', () => {
    const b = new B();
    const x = b.input([3]);
    const one = b.full([2, 3], 1);
    const xe = b.op('expand', [x], { shape: [2, 3] }, [2, 3]);
    const g = clean(b.ret(b.op('mul', [xe, one])));
    // the expand of x stays (its shape is needed); only the multiply by one goes
    expect(outNode(g).shape).toEqual([2, 3]);
    expect(ops(g)).not.toContain('mul');
  });

  it('neg(neg x) is x; neg(x) stays', () => {
    const b = new B();
    const x = b.input([5]);
    const n1 = b.op('neg', [x]);
    const g = clean(b.ret(b.op('neg', [n1]), n1));
    expect(outNode(g, 0).op).toBe('input');
    expect(outNode(g, 1).op).toBe('neg');
  });

  it('identity casts and copies disappear; a real cast stays', () => {
    const b = new B();
    const x = b.input([3]);
    const i = b.input([3], 'int32', 1);
    const same = b.op('cast', [x], { dtype: 'float32' });
    const copied = b.op('copy', [same]);
    const real = b.op('cast', [i], { dtype: 'float32' }, [3], 'float32');
    const g = clean(b.ret(copied, real));
    expect(outNode(g, 0).op).toBe('input');
    expect(outNode(g, 1).op).toBe('cast');
    expect(outNode(g, 1).dtype).toBe('float32');
  });

  it('identity views disappear; views of views compose', () => {
    const b = new B();
    const x = b.input([2, 3]);
    const r = b.op('reshape', [x], { shape: [2, 3] });
    const p = b.op('permute', [r], { perm: [0, 1] });
    const t1 = b.op('permute', [x], { perm: [1, 0] }, [3, 2]);
    const t2 = b.op('permute', [t1], { perm: [1, 0] }, [2, 3]);
    const r1 = b.op('reshape', [x], { shape: [6] }, [6]);
    const r2 = b.op('reshape', [r1], { shape: [3, 2] }, [3, 2]);
    const g = clean(b.ret(p, t2, r2));
    expect(outNode(g, 0).op).toBe('input');
    expect(outNode(g, 1).op).toBe('input');
    const rr = outNode(g, 2);
    expect(rr.op).toBe('reshape');
    expect(g.node(rr.inputs[0]).op).toBe('input');
  });

  it('folds constants: ops on constants become one full node with the right value and dtype', () => {
    const b = new B();
    const two = b.full([4], 2), three = b.full([4], 3);
    const five = b.op('add', [two, three]);
    const e = b.op('exp', [b.op('sub', [five, b.full([4], 5)])]); // exp(0) = 1
    const cmp = b.op('lt', [two, three], {}, [4], 'bool');
    const g = clean(b.ret(b.op('mul', [five, three]), e, cmp));
    expect(ops(g).every((o) => o === 'full')).toBe(true);
    const v = (i: number) => (outNode(g, i).attrs as { value: number }).value;
    expect(v(0)).toBe(15);
    expect(v(1)).toBe(1);
    expect(v(2)).toBe(1);
    expect(outNode(g, 2).dtype).toBe('bool');
    expect(outNode(g, 0).shape).toEqual([4]);
  });

  it('folds in float32 (the folded value is Math.fround of the result)', () => {
    const b = new B();
    const g = clean(b.ret(b.op('div', [b.full([], 1), b.full([], 3)])));
    expect((outNode(g).attrs as { value: number }).value).toBe(Math.fround(1 / 3));
  });

  it('folds broadcasts (expand/reshape) of constants into constants of the new shape', () => {
    const b = new B();
    const c = b.full([], 2.5);
    const e = b.op('expand', [c], { shape: [3, 4] }, [3, 4]);
    const r = b.op('reshape', [e], { shape: [12] }, [12]);
    const x = b.input([12]);
    const g = clean(b.ret(r, b.op('mul', [x, r])));
    const o = outNode(g, 0);
    expect(o.op).toBe('full');
    expect(o.shape).toEqual([12]);
    expect((o.attrs as { value: number }).value).toBe(2.5);
    // the multiply reads a folded constant directly, no expand/reshape left
    expect(ops(g)).not.toContain('expand');
    expect(ops(g)).not.toContain('reshape');
  });

  it('on a traced graph: x.mul(1).add(0).neg().neg().clone().div(1).sub(0).pow(1) is x', () => {
    const x = kiln.randn([2, 3]);
    const t = trace((a: Tensor) => a.mul(1).add(0).neg().neg().clone().div(1).sub(0).pow(1), [x]);
    expect(t.graph.nodes.length).toBeGreaterThan(10);
    const g = clean(t.graph);
    expect(ops(g)).toEqual(['input']);
    expect(outNode(g).op).toBe('input');
  });

  it('on a traced graph: ones(3).mul(2).add(1).expand([2,3]) folds to one constant', () => {
    const x = kiln.randn([2, 3]);
    const t = trace((a: Tensor) => kiln.ones([3]).mul(2).add(1).expand([2, 3]).mul(a), [x]);
    const g = clean(t.graph);
    expect(ops(g).sort()).toEqual(['full', 'input', 'mul']);
    const full = g.nodes.find((n) => n.op === 'full')!;
    expect((full.attrs as { value: number }).value).toBe(3);
    expect(full.shape).toEqual([2, 3]);
  });

  it('keeps outputs and node metadata (source lines) intact', () => {
    const x = kiln.randn([4]);
    const t = trace((a: Tensor) => a.exp().mul(1), [x]);
    const g = clean(t.graph);
    expect(outNode(g).op).toBe('exp');
    expect(outNode(g).source).toContain('passes.test.ts');
  });
});

describe('cse', () => {
  it('merges duplicate nodes (same op, attrs, inputs)', () => {
    const b = new B();
    const x = b.input([3]);
    const e1 = b.op('exp', [x]), e2 = b.op('exp', [x]);
    const s1 = b.op('sum', [e1], { axes: [0] }, [1]), s2 = b.op('sum', [e2], { axes: [0] }, [1]);
    const g = dce(cse(b.ret(b.op('add', [s1, s2]))));
    expect(ops(g).filter((o) => o === 'exp')).toHaveLength(1);
    expect(ops(g).filter((o) => o === 'sum')).toHaveLength(1);
    const add = outNode(g);
    expect(add.inputs[0]).toBe(add.inputs[1]);
  });

  it('does not merge nodes that differ in attributes, and never merges inputs', () => {
    const b = new B();
    const x = b.input([2, 3]), y = b.input([2, 3], 'float32', 1);
    const s0 = b.op('sum', [x], { axes: [0] }, [1, 3]);
    const s1 = b.op('sum', [x], { axes: [1] }, [2, 1]);
    const g = cse(b.ret(s0, s1, b.op('add', [x, y])));
    expect(ops(g).filter((o) => o === 'sum')).toHaveLength(2);
    expect(ops(g).filter((o) => o === 'input')).toHaveLength(2);
  });

  it('on a traced graph: x.exp().add(x.exp()) computes exp once', () => {
    const t = trace((a: Tensor) => a.exp().add(a.exp()), [kiln.randn([4])]);
    expect(ops(t.graph).filter((o) => o === 'exp')).toHaveLength(2);
    const g = dce(cse(t.graph));
    expect(ops(g).filter((o) => o === 'exp')).toHaveLength(1);
  });

  it('merges constants that simplify produced from different expressions', () => {
    const t = trace((a: Tensor) => a.mul(kiln.ones([4]).mul(2)).add(kiln.full([4], 2)), [kiln.randn([4])]);
    const g = dce(cse(simplify(t.graph)));
    expect(ops(g).filter((o) => o === 'full')).toHaveLength(1);
  });
});

describe('dce', () => {
  it('drops nodes no output depends on, keeps the rest in order', () => {
    const b = new B();
    const x = b.input([3]);
    b.op('exp', [b.op('sin', [x])]); // dead
    const live = b.op('cos', [x]);
    const g = dce(b.ret(live));
    expect(ops(g)).toEqual(['input', 'cos']);
    expect(outNode(g).inputs).toEqual([0]);
  });

  it('keeps nodes that write-back outputs need', () => {
    const b = new B();
    const x = b.input([3]);
    const y = b.op('exp', [x]);
    b.g.outputs.push({ kind: 'write', node: y, ref: {}, label: 'p' });
    const g = dce(b.g);
    expect(ops(g)).toEqual(['input', 'exp']);
  });

  it('on a traced graph: an unused computation leaves no node', () => {
    const t = trace((a: Tensor) => {
      void a.mul(5).exp().sum();
      return a.relu();
    }, [kiln.randn([4])]);
    const g = dce(t.graph);
    expect(ops(g).sort()).toEqual(['input', 'relu']);
  });
});

describe('memory planning', () => {
  /** Build the whole pipeline for a traced function (as compile does) with fusion off. */
  function plan(fn: (...a: Tensor[]) => unknown, args: Tensor[], fuse: boolean) {
    const g = dce(cse(dce(simplify(cse(simplify(trace(fn, args).graph))))));
    const inputViews = new Map<number, View>();
    for (const n of g.nodes) if (n.op === 'input') inputViews.set(n.id, contiguousView(n.shape));
    const sched = schedule(g, { fuse, inputViews, maxArgs: Infinity });
    return { g, sched, mem: planMemory(g, sched) };
  }

  const chain = (x: Tensor): Tensor => {
    let y = x;
    for (let i = 0; i < 12; i++) y = i % 3 === 0 ? y.exp() : i % 3 === 1 ? y.sin() : y.neg();
    return y;
  };

  it('a long elementwise chain with every node realized (fuse off) reuses buffers: peak < sum of intermediates', () => {
    const { g, sched, mem } = plan(chain, [kiln.randn([64])], false);
    const computed = g.nodes.filter((n) => n.op !== 'input');
    expect(sched.kernels.length).toBe(12);
    const sumOfIntermediates = (computed.length - 1) * 64 * 4; // the last one is returned (fresh)
    expect(mem.peakBytes).toBeGreaterThan(0);
    expect(mem.peakBytes).toBeLessThan(sumOfIntermediates);
    // a chain needs at most two live temporaries at a time
    expect(mem.slots.length).toBeLessThanOrEqual(2);
    expect(mem.slotOf.size).toBe(11);
  });

  it('the returned value gets fresh storage (not a pooled slot)', () => {
    const { g, mem } = plan(chain, [kiln.randn([64])], false);
    const ret = g.outputs[0].node!;
    expect(mem.fresh.has(ret)).toBe(true);
    expect(mem.slotOf.has(ret)).toBe(false);
  });

  it('buffers of different sizes or dtypes are not shared', () => {
    const { mem } = plan((x: Tensor) => x.exp().sum(1).exp().sum().exp(), [kiln.randn([8, 4])], false);
    for (const [node, slot] of mem.slotOf) expect(mem.slots[slot].size).toBeGreaterThan(0), void node;
    const sizes = new Set(mem.slots.map((s) => s.size));
    expect(sizes.size).toBeGreaterThan(1);
  });

  it('fused, the same chain needs no temporaries at all', () => {
    const { sched, mem } = plan(chain, [kiln.randn([64])], true);
    expect(sched.kernels.length).toBe(1);
    expect(mem.peakBytes).toBe(0);
  });
});

describeEachDevice('passes through compile().lower()', (device) => {
  it('simplify + cse + dce: the optimized graph of a redundant function is small and still correct', async () => {
    const step = kiln.compile((x: Tensor) => {
      void x.mul(7).exp(); // dead
      const a = x.mul(1).add(0).neg().neg(); // x
      return a.exp().add(a.exp()).mul(kiln.ones([4], { device }).mul(0.5)); // exp(x)
    });
    const x = kiln.tensor([0, 1, -1, 2], { device });
    const l = await step.lower(x);
    const g = (l.optimized as unknown as { graph: Graph }).graph;
    expect(ops(g).filter((o) => o === 'exp')).toHaveLength(1);
    expect(ops(g)).not.toContain('neg');
    expect(ops(g)).not.toContain('sin');
    expect(ops(g).filter((o) => o !== 'input' && o !== 'full' && o !== 'expand').length).toBeLessThanOrEqual(3);
    expectValues(await values(await step(x)), [0, 1, -1, 2].map(Math.exp), { rtol: 1e-6, atol: 1e-6 }, 'exp(x)');
  });

  it('peakBytes of a long chain with fuse: false is below the sum of its intermediates', async () => {
    const f = (x: Tensor): Tensor => {
      let y = x;
      for (let i = 0; i < 10; i++) y = y.mul(1.01).add(0.5);
      return y;
    };
    const x = kiln.randn([256], { device });
    const unfused = await kiln.compile(f, { fuse: false }).lower(x);
    expect(unfused.kernels.length).toBeGreaterThanOrEqual(20);
    expect(unfused.peakBytes).toBeGreaterThan(0);
    expect(unfused.peakBytes).toBeLessThan((unfused.kernels.length - 1) * 256 * 4);
    const fused = await kiln.compile(f).lower(x);
    expect(fused.peakBytes).toBeLessThanOrEqual(unfused.peakBytes);
    const [a, b] = [await values(await kiln.compile(f, { fuse: false })(x)), await values(f(x))];
    expectValues(a, b, { rtol: 1e-5, atol: 1e-6 }, 'unfused chain');
  });
});
