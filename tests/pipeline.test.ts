// The named pass pipeline (compiler/pipeline.ts), its printers (compiler/print.ts) and the IR
// verifier (ir/verify.ts): the verifier names what is wrong with a malformed graph and the pass that
// produced it; lower() keeps every stage and prints the schedule and the memory plan; KILN_DUMP
// writes all of them.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { Graph } from '../ir/graph.ts';
import { verify, verifyProblems } from '../ir/verify.ts';
import { graphPasses, runPipeline } from '../compiler/pipeline.ts';
import { describeEachDevice } from './devices.ts';

type Tensor = kiln.Tensor;

/** x: f32[2, 3] -> exp(x) + x, returned. */
function smallGraph(): Graph {
  const g = new Graph();
  g.add({ op: 'input', attrs: { kind: 'arg', index: 0 }, inputs: [], shape: [2, 3], dtype: 'float32', phase: 'forward' });
  g.add({ op: 'exp', attrs: {}, inputs: [0], shape: [2, 3], dtype: 'float32', phase: 'forward' });
  g.add({ op: 'add', attrs: {}, inputs: [1, 0], shape: [2, 3], dtype: 'float32', phase: 'forward' });
  g.outputs.push({ kind: 'return', node: 2, label: 'return 0' });
  return g;
}

describe('ir/verify', () => {
  it('accepts a well-formed graph', () => {
    expect(verifyProblems(smallGraph())).toEqual([]);
    expect(() => verify(smallGraph(), 'test')).not.toThrow();
  });

  it('names a node whose shape or dtype disagrees with its shape rule', () => {
    const g = smallGraph();
    g.add({ op: 'sum', attrs: { axes: [1] }, inputs: [2], shape: [2, 3], dtype: 'float32', phase: 'forward' });
    g.add({ op: 'gt', attrs: {}, inputs: [2, 1], shape: [2, 3], dtype: 'float32', phase: 'forward' });
    const problems = verifyProblems(g);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toContain('%3: sum should give float32[2, 1], the node says float32[2, 3]');
    expect(problems[1]).toContain('%4: gt should give bool[2, 3], the node says float32[2, 3]');
  });

  it('names operands its shape rule rejects', () => {
    const g = smallGraph();
    g.add({ op: 'input', attrs: { kind: 'arg', index: 1 }, inputs: [], shape: [4], dtype: 'float32', phase: 'forward' });
    g.add({ op: 'mul', attrs: {}, inputs: [2, 3], shape: [2, 3], dtype: 'float32', phase: 'forward' });
    const [p] = verifyProblems(g);
    expect(p).toContain('%4: the shape rule of mul rejects its operands');
    expect(p).toContain('[2, 3]');
  });

  it('names reads of later nodes (not topological), inputs with operands, and missing outputs', () => {
    const g = smallGraph();
    g.nodes[1] = { ...g.nodes[1], inputs: [2] };
    g.nodes[0] = { ...g.nodes[0], inputs: [1] };
    g.outputs.push({ kind: 'return', node: 9, label: 'return 1' }, { kind: 'write', node: null, label: 'w' });
    const problems = verifyProblems(g).join('\n');
    expect(problems).toContain('%1 reads %2, which is not an earlier node (graph not in topological order)');
    expect(problems).toContain('input %0 has operands');
    expect(problems).toContain('output 1 (return return 1) names %9, which does not exist (3 nodes)');
    expect(problems).toContain('output 2 (write w) has no node');
    expect(() => verify(g, 'simplify.2')).toThrow(/after 'simplify.2' is malformed \(5 problem\(s\)\)/);
  });

  it('runs after every pass when asked: a pass that breaks the graph is named', () => {
    const broken = { name: 'breaks-shapes', run: (g: Graph) => { const h = new Graph(); for (const n of g.nodes) h.add({ ...n, shape: n.op === 'input' ? n.shape : [7] }); h.outputs = g.outputs; return h; } };
    const opts = { fuse: true, maxArgs: 8, splitReductions: false, verify: true };
    const p = runPipeline(smallGraph(), opts);
    expect(p.stages.map((s) => s.name)).toEqual(['traced', ...graphPasses.map((q) => q.name)]);
    expect(() => runPipeline(smallGraph(), opts, [graphPasses[0], broken])).toThrow(/after 'breaks-shapes'.*\n%1: exp should give float32\[2, 3\], the node says float32\[7\]/);
    // without verify nothing checks: the broken graph goes on to fusion
    expect(runPipeline(smallGraph(), { ...opts, verify: false }, [graphPasses[0], broken]).stages.map((s) => s.name)).toEqual(['traced', 'simplify', 'breaks-shapes']);
  });

  it('the test suite runs with KILN_VERIFY=1 (vitest.config.ts), so every compiled test is verified', () => {
    expect(process.env.KILN_VERIFY).toBe('1');
  });
});

describeEachDevice('pipeline listings', (device) => {
  const mlpStep = () => {
    const lin = new kiln.nn.Linear(4, 3).to(device);
    const opt = new kiln.optim.SGD(lin.parameters(), { lr: 0.1 });
    return kiln.compile((x: Tensor) => {
      opt.zeroGrad();
      const loss = lin.forward(x).relu().sum();
      loss.backward();
      opt.step();
      return loss;
    });
  };

  it('lower() keeps every stage, in pipeline order, and prints each', async () => {
    const x = kiln.ones([2, 4], { device });
    const l = await mlpStep().lower(x);
    expect(l.stages.map((s) => s.title)).toEqual(['traced', ...graphPasses.map((p) => p.name)]);
    expect(l.stages[0].nodes.length).toBe(l.forward.nodes.length + l.backward.nodes.length + l.update.nodes.length);
    expect(l.stages.at(-1)!.nodes.length).toBe(l.optimized.nodes.length);
    // dce removes the nodes simplify and cse orphaned
    const sizes = Object.fromEntries(l.stages.map((s) => [s.title, s.nodes.length]));
    expect(sizes.dce).toBeLessThan(sizes.traced);
    for (const s of l.stages) expect(s.toString().split('\n')[0]).toBe(`${s.title}: ${s.nodes.length} nodes`);
  });

  it('prints the schedule (launch order, buffers) and the memory plan (slots, sizes, lifetimes)', async () => {
    const x = kiln.ones([2, 4], { device });
    const l = await mlpStep().lower(x);
    const sched = l.schedule.toString().split('\n');
    expect(sched[0]).toBe(`schedule: ${l.kernels.length} kernel launch(es), in order`);
    l.kernels.forEach((k, i) => expect(sched.some((line) => line.startsWith(`  #${i} ${k.name} (`)), k.name).toBe(true));
    expect(l.schedule.toString()).toMatch(/reads {2}%0 float32\[2, 4\]/);
    const mem = l.memory.toString();
    expect(mem.split('\n')[0]).toBe(`memory plan: ${l.memory.plan.slots.length} pooled slot(s), ${l.peakBytes} bytes`);
    expect(mem).toMatch(/slot 0: float32\[\d+\] \d+ bytes {2}<- %\d+ #\d+\.\.(#\d+|end)/);
    expect(mem).toMatch(/fresh {3}%\d+ float32\[\] #\d+\.\.end \(returned/);
    expect(mem).toContain('(computed into weight)');
    expect(mem).toContain('(computed into bias)');
  });

  it('KILN_DUMP writes every stage, the schedule and the memory plan', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-stages-'));
    const prev = process.env.KILN_DUMP;
    process.env.KILN_DUMP = dir;
    try {
      const x = kiln.ones([2, 4], { device });
      const l = await mlpStep().lower(x);
      const files = readdirSync(dir);
      l.stages.forEach((s, i) => {
        const f = files.find((n) => n.endsWith(`.stage${i}.${s.title}.txt`));
        expect(f, `stage ${i} in ${files.join(', ')}`).toBeDefined();
        expect(readFileSync(join(dir, f!), 'utf8').trim()).toBe(s.toString().trim());
      });
      for (const part of ['schedule', 'memory'] as const) {
        const f = files.find((n) => n.endsWith(`.${part}.txt`))!;
        expect(readFileSync(join(dir, f), 'utf8').trim()).toBe(l[part].toString().trim());
      }
    } finally {
      if (prev === undefined) delete process.env.KILN_DUMP;
      else process.env.KILN_DUMP = prev;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
