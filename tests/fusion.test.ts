// Fusion results pinned on known graphs through `await step.lower(...)` (API.md "compile",
// compiler/passes/fusion.ts): Linear+ReLU is one matmul kernel with a ReLU epilogue; in an SGD
// training step every parameter update is fused into the kernel that computes that parameter's
// gradient; fuse: false gives one kernel per non-view op; kernels list their IR nodes with source
// lines; the listings print ops, shapes, dtypes and this file's lines; KILN_DUMP writes them.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import type { Lowered } from '../jit/compile.ts';
import type { Graph, Node } from '../ir/graph.ts';
import { isView } from '../ir/primitives.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values } from './golden.ts';
import { markedLine } from './helpers/source-lines.ts';

const { nn, F, optim } = kiln;
type Tensor = kiln.Tensor;
const THIS_FILE = 'fusion.test.ts';
const lineOf = (marker: string): number => markedLine(import.meta.url, marker);

/** The IR node ids a kernel covers, parsed from its `ops` lines (`%12 = op(...) : ...`). */
function opIds(ops: string[]): number[] {
  return ops.map((o) => {
    const m = /^%(\d+) = /.exec(o.trim());
    if (!m) throw new Error(`kernel op line does not start with '%id = ': ${o}`);
    return Number(m[1]);
  });
}

function graphOf(l: Lowered): Graph {
  return (l.optimized as unknown as { graph: Graph }).graph;
}

/** Nodes of the optimized graph covered by each kernel. */
function kernelNodes(l: Lowered): Node[][] {
  const g = graphOf(l);
  return l.kernels.map((k) => opIds(k.ops).map((id) => g.node(id)));
}


/** The kernel body without the leading comment header (`// kernel ...`, `//   %3 = ...`). */
const body = (source: string) => source.split('\n').filter((l) => !l.trim().startsWith('//')).join('\n');

class MLP2 extends nn.Module {
  fc1: kiln.nn.Linear;
  fc2: kiln.nn.Linear;
  constructor(device: 'cpu' | 'webgpu') {
    super();
    this.fc1 = new nn.Linear(6, 5, { device });
    this.fc2 = new nn.Linear(5, 3, { device });
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(F.relu(this.fc1.forward(x)));
  }
}

function mlpStep(model: MLP2, opt: kiln.optim.Optimizer, fuse = true) {
  return kiln.compile((x: Tensor, y: Tensor) => {
    const loss = F.crossEntropy(model.forward(x), y); // MARK:mlpLoss
    loss.backward(); // MARK:mlpBackward
    opt.step(); // MARK:mlpStep
    opt.zeroGrad();
    return loss;
  }, { fuse });
}

describeEachDevice('fusion', (device) => {
  const batch = () => {
    kiln.manualSeed(21);
    return {
      x: kiln.randn([4, 6], { device }),
      y: kiln.tensor(Int32Array.from([0, 2, 1, 2]), { shape: [4], dtype: 'int32', device }),
    };
  };

  it('Linear + ReLU forward (no grad) is ONE matmul kernel with the ReLU (and bias) in its epilogue', async () => {
    const lin = new nn.Linear(4, 3, { device });
    const step = kiln.compile((x: Tensor) => F.relu(lin.forward(x))); // MARK:linRelu
    const x = kiln.randn([2, 4], { device });
    const l = await kiln.noGrad(() => step.lower(x));
    expect(l.kernels).toHaveLength(1);
    const [k] = l.kernels;
    const ops = kernelNodes(l)[0].map((n) => n.op);
    expect(ops).toContain('matmul');
    expect(ops).toContain('relu');
    expect(ops).toContain('add');
    expect(k.name).toMatch(/^matmul/);
    expect(k.language).toBe(device === 'webgpu' ? 'wgsl' : 'js');
    // the ReLU is computed in the kernel body: a branchless select (JS) or max/select (WGSL)
    expect(body(k.source)).toMatch(/<\s*0(\.0)?\s*\?\s*0|max\(|select\(|SEL\[/); // ReLU: WGSL select(), JS's branchless select table
    // and it still computes relu(x W^T + b)
    const got = await values(await kiln.noGrad(() => step(x)));
    const want = await values(kiln.noGrad(() => F.relu(lin.forward(x))));
    expectValues(got, want, { rtol: 1e-5, atol: 1e-6 }, 'linear+relu');
    // ops carry the user's source line
    expect(k.ops.join('\n')).toContain(`${THIS_FILE}:${lineOf('MARK:linRelu')}`);
  });

  it('on WebGPU the kernel source is WGSL; on CPU it is JavaScript', async () => {
    const step = kiln.compile((x: Tensor) => x.exp().add(1).sum());
    const l = await step.lower(kiln.ones([8], { device }));
    for (const k of l.kernels) {
      if (device === 'webgpu') {
        expect(k.language).toBe('wgsl');
        expect(body(k.source)).toMatch(/@compute|@workgroup_size|var<storage/);
      } else {
        expect(k.language).toBe('js');
        expect(body(k.source)).toMatch(/function /);
      }
    }
  });

  it('an MLP + SGD training step: every parameter update is fused into the kernel computing its gradient', async () => {
    const model = new MLP2(device);
    const opt = new optim.SGD(model.parameters(), { lr: 0.1 });
    const { x, y } = batch();
    const l = await mlpStep(model, opt).lower(x, y);
    const g = graphOf(l);
    const nodesOf = kernelNodes(l);
    const params = model.parameters();
    const writes = g.outputs.filter((o) => o.kind === 'write' && params.includes(o.ref as Tensor));
    expect(writes).toHaveLength(4);
    for (const w of writes) {
      const ks = nodesOf.map((ns, i) => (ns.some((n) => n.id === w.node) ? i : -1)).filter((i) => i >= 0);
      expect(ks, `kernels computing the new value of ${w.label}`).toHaveLength(1);
      const ops = nodesOf[ks[0]].map((n) => n.op);
      // the gradient (a matmul for weights, a sum over the batch for biases) is in the same kernel
      expect(ops.some((o) => o === 'matmul' || o === 'sum'), `${l.kernels[ks[0]].name}: ${ops.join(' ')}`).toBe(true);
      // and so is the update (sub of lr * grad)
      expect(nodesOf[ks[0]].some((n) => n.phase === 'update' || n.op === 'sub')).toBe(true);
    }
    // no kernel that writes a parameter consists of update nodes only
    for (const [i, ns] of nodesOf.entries()) {
      const writesParam = writes.some((w) => ns.some((n) => n.id === w.node));
      if (writesParam) expect(ns.every((n) => n.phase === 'update' || isView(n.op) || n.op === 'full'), l.kernels[i].name).toBe(false);
    }
    // the compiled step still trains like eager
    const ref = new MLP2(device);
    ref.loadStateDict(model.stateDict());
    const optRef = new optim.SGD(ref.parameters(), { lr: 0.1 });
    const step = mlpStep(model, opt);
    for (let i = 0; i < 3; i++) {
      const le = F.crossEntropy(ref.forward(x), y);
      le.backward();
      optRef.step();
      optRef.zeroGrad();
      expectValues([await (await step(x, y)).item()], [await le.item()], { rtol: 1e-5, atol: 1e-6 }, `fused step ${i}`);
    }
    for (const [i, p] of params.entries()) expectValues(await values(p), await values(ref.parameters()[i]), { rtol: 1e-5, atol: 1e-6 }, `param ${i}`);
  });

  it('Adam: multi-output kernels: the kernel that writes a parameter also writes its expAvg and expAvgSq (fusion.ts rule)', async () => {
    const model = new MLP2(device);
    const opt = new optim.Adam(model.parameters(), { lr: 0.01 });
    const { x, y } = batch();
    const l = await mlpStep(model, opt).lower(x, y);
    const g = graphOf(l);
    const nodesOf = kernelNodes(l);
    const kernelWriting = (t: Tensor): number => {
      const o = g.outputs.find((w) => w.kind === 'write' && w.ref === t);
      expect(o, 'a write-back output').toBeDefined();
      const ks = nodesOf.map((ns, i) => (ns.some((n) => n.id === o!.node) ? i : -1)).filter((i) => i >= 0);
      expect(ks).toHaveLength(1);
      return ks[0];
    };
    const problems: string[] = [];
    model.parameters().forEach((p, i) => {
      const kp = kernelWriting(p), km = kernelWriting(opt.expAvg[i]), kv = kernelWriting(opt.expAvgSq[i]);
      if (!(kp === km && km === kv)) problems.push(`param ${i}: p in ${l.kernels[kp].name}, m in ${l.kernels[km].name}, v in ${l.kernels[kv].name}`);
    });
    expect(problems, problems.join('; ')).toEqual([]);
  });

  it('views fold into their consumer: transpose then elementwise, reshape + slice then elementwise are one kernel each', async () => {
    const x = kiln.arange(0, 12, 1, { device }).float().reshape([3, 4]).contiguous();
    // (a reshape of a transposed view is not a strided view; a copy there is legitimate, as in PyTorch)
    for (const f of [(t: Tensor) => t.T.mul(2).add(1), (t: Tensor) => t.reshape([2, 6]).index(null, [1, 5]).mul(2), (t: Tensor) => t.index([null, null, 2]).unsqueeze(0).expand([2, 2, 4]).neg()]) {
      const step = kiln.compile(f);
      const l = await step.lower(x);
      expect(l.kernels, l.kernels.map((k) => k.name).join(', ')).toHaveLength(1);
      expect(await values(await step(x))).toEqual(await values(f(x)));
    }
  });

  it('a kernel with more inputs than a device binds (40 arguments summed) still gives the right answer', async () => {
    // 40 buffers is more than any adapter's maxStorageBuffersPerShaderStage seen so far (lavapipe: 16).
    const args = Array.from({ length: 40 }, (_, i) => kiln.full([5], i + 1, { device }));
    const step = kiln.compile((...a: Tensor[]) => a.reduce((s, t) => s.add(t)));
    expect(await values(await step(...args))).toEqual(new Array(5).fill(820));
    const l = await step.lower(...args);
    if (device === 'webgpu') expect(l.kernels.length).toBeGreaterThan(1);
  });

  it('options.fuse = false: one kernel per non-view op, more kernels than fused, same results', async () => {
    const model = new MLP2(device);
    const opt = new optim.SGD(model.parameters(), { lr: 0.1 });
    const { x, y } = batch();
    const fused = await mlpStep(model, opt).lower(x, y);
    const unfused = await mlpStep(model, opt, false).lower(x, y);
    expect(unfused.kernels.length).toBeGreaterThan(fused.kernels.length);
    const g = graphOf(unfused);
    const computed = g.nodes.filter((n) => n.op !== 'input' && !isView(n.op));
    expect(unfused.kernels.length).toBe(computed.length);
    for (const ns of kernelNodes(unfused)) {
      expect(ns.filter((n) => !isView(n.op))).toHaveLength(1);
    }
    // fused kernels cover several nodes
    expect(Math.max(...kernelNodes(fused).map((ns) => ns.length))).toBeGreaterThan(1);

    // both give eager's numbers
    const m1 = new MLP2(device), m2 = new MLP2(device);
    m2.loadStateDict(m1.stateDict());
    const o1 = new optim.SGD(m1.parameters(), { lr: 0.1 }), o2 = new optim.SGD(m2.parameters(), { lr: 0.1 });
    const s1 = mlpStep(m1, o1, true), s2 = mlpStep(m2, o2, false);
    for (let i = 0; i < 3; i++) {
      const [a, b] = [await (await s1(x, y)).item(), await (await s2(x, y)).item()];
      expectValues([a], [b], { rtol: 1e-5, atol: 1e-6 }, `fused vs unfused step ${i}`);
    }
    for (const [i, p] of m1.parameters().entries()) expectValues(await values(p), await values(m2.parameters()[i]), { rtol: 1e-5, atol: 1e-6 }, `param ${i}`);
  });

  it('kernels list their IR nodes with ids and source lines; elementwise chains fuse into one kernel', async () => {
    const step = kiln.compile((a: Tensor, b: Tensor) => {
      const c = a.mul(b).add(1); // MARK:chain1
      return c.exp().neg().sigmoid(); // MARK:chain2
    });
    const a = kiln.randn([3, 4], { device }), b = kiln.randn([3, 4], { device });
    const l = await step.lower(a, b);
    expect(l.kernels).toHaveLength(1);
    const [k] = l.kernels;
    const names = k.ops.map((o) => /^%\d+ = (\w+)\(/.exec(o.trim())?.[1] ?? '?');
    // constants (full) and views fold into the kernel too
    expect(names.filter((n) => n !== 'full' && !isView(n))).toEqual(['mul', 'add', 'exp', 'neg', 'sigmoid']);
    const text = k.ops.join('\n');
    expect(text).toContain(`${THIS_FILE}:${lineOf('MARK:chain1')}`);
    expect(text).toContain(`${THIS_FILE}:${lineOf('MARK:chain2')}`);
    // the source carries the same listing as a header
    for (const o of k.ops) expect(k.source).toContain(o);
    expect(typeof k.name).toBe('string');
  });

  it('an elementwise producer fuses into its reduction, and a reduction feeds its epilogue', async () => {
    const step = kiln.compile((x: Tensor) => x.mul(2).exp().sum(1).log());
    const l = await step.lower(kiln.randn([3, 5], { device }));
    expect(l.kernels).toHaveLength(1);
    const ops = kernelNodes(l)[0].map((n) => n.op);
    expect(ops).toEqual(expect.arrayContaining(['mul', 'exp', 'sum', 'log']));
  });

  it('lower() listings: forward/backward/update/optimized print op names, shapes, dtypes and this file:line', async () => {
    const model = new MLP2(device);
    const opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
    const { x, y } = batch();
    const l = await mlpStep(model, opt).lower(x, y);
    const fw = l.forward.toString(), bw = l.backward.toString(), up = l.update.toString(), opt_ = l.optimized.toString();
    for (const s of [fw, bw, up, opt_]) {
      expect(s.split('\n').length).toBeGreaterThan(3);
      expect(s).toContain('float32');
      expect(s).toContain(THIS_FILE);
    }
    expect(fw).toMatch(/matmul\(/);
    expect(fw).toContain('float32[4, 5]'); // fc1's output
    expect(fw).toContain('float32[4, 3]'); // logits
    expect(fw).toContain('int32[4]'); // the targets
    expect(fw).toContain(`${THIS_FILE}:${lineOf('MARK:mlpLoss')}`);
    expect(bw).toMatch(/matmul\(/);
    expect(bw).toContain(`${THIS_FILE}:${lineOf('MARK:mlpBackward')}`);
    expect(up).toMatch(/(sub|mul|add)\(/);
    expect(up).toContain(`${THIS_FILE}:${lineOf('MARK:mlpStep')}`);
    expect(up).toContain('float32[5, 6]'); // fc1.weight's update
    expect(opt_).toMatch(/kernels/);
  });

  it('peakBytes is a positive number for a training step', async () => {
    const model = new MLP2(device);
    const opt = new optim.SGD(model.parameters(), { lr: 0.1 });
    const { x, y } = batch();
    const l = await mlpStep(model, opt).lower(x, y);
    expect(typeof l.peakBytes).toBe('number');
    expect(l.peakBytes).toBeGreaterThan(0);
    expect(Number.isFinite(l.peakBytes)).toBe(true);
  });

  it('lower() does not run the step (parameters unchanged) and does not count as a new trace after a call', async () => {
    const model = new MLP2(device);
    const opt = new optim.SGD(model.parameters(), { lr: 0.1 });
    const { x, y } = batch();
    const before = await Promise.all(model.parameters().map(values));
    const step = mlpStep(model, opt);
    await step.lower(x, y);
    expect(await Promise.all(model.parameters().map(values))).toEqual(before);
    expect(step.traces).toBe(1);
    await step(x, y);
    await step.lower(x, y);
    expect(step.traces).toBe(1);
  });

  describe('KILN_DUMP', () => {
    it('KILN_DUMP=dir writes the forward/backward/update/optimized listings and kernel sources', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'kiln-dump-'));
      const prev = process.env.KILN_DUMP;
      process.env.KILN_DUMP = dir;
      let l: Lowered;
      try {
        const model = new MLP2(device);
        const opt = new optim.SGD(model.parameters(), { lr: 0.1 });
        const { x, y } = batch();
        const step = mlpStep(model, opt);
        await step(x, y);
        l = await step.lower(x, y);
      } finally {
        if (prev === undefined) delete process.env.KILN_DUMP;
        else process.env.KILN_DUMP = prev;
      }
      try {
        const files = readdirSync(dir);
        for (const part of ['forward', 'backward', 'update', 'optimized']) {
          const f = files.find((n) => n.includes(part));
          expect(f, `a ${part} listing in ${files.join(', ')}`).toBeDefined();
          const text = readFileSync(join(dir, f!), 'utf8');
          expect(text.trim()).toBe((l[part as 'forward'].toString()).trim());
          expect(text).toContain(THIS_FILE);
        }
        const ext = device === 'webgpu' ? '.wgsl' : '.js';
        const kernelFiles = files.filter((n) => n.endsWith(ext));
        expect(kernelFiles.length).toBe(l.kernels.length);
        const sources = kernelFiles.map((f) => readFileSync(join(dir, f), 'utf8').trim()).sort();
        expect(sources).toEqual(l.kernels.map((k) => k.source.trim()).sort());
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('KILN_DUMP writes a new set of files on every compilation (a retrace for a new shape)', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'kiln-dump2-'));
      const prev = process.env.KILN_DUMP;
      process.env.KILN_DUMP = dir;
      try {
        const step = kiln.compile((x: Tensor) => x.exp().sum());
        await step(kiln.ones([3], { device }));
        const n1 = readdirSync(dir).filter((f) => f.includes('forward')).length;
        await step(kiln.ones([3], { device })); // cached: nothing new
        expect(readdirSync(dir).filter((f) => f.includes('forward')).length).toBe(n1);
        await step(kiln.ones([5], { device })); // new signature: traced and dumped again
        expect(step.traces).toBe(2);
        expect(n1).toBe(1);
        expect(readdirSync(dir).filter((f) => f.includes('forward')).length).toBe(2);
      } finally {
        if (prev === undefined) delete process.env.KILN_DUMP;
        else process.env.KILN_DUMP = prev;
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('without KILN_DUMP nothing is written', async () => {
      const prev = process.env.KILN_DUMP;
      delete process.env.KILN_DUMP;
      try {
        const dir = mkdtempSync(join(tmpdir(), 'kiln-nodump-'));
        await kiln.compile((x: Tensor) => x.add(1))(kiln.ones([2], { device }));
        expect(readdirSync(dir)).toEqual([]);
        rmSync(dir, { recursive: true, force: true });
      } finally {
        if (prev !== undefined) process.env.KILN_DUMP = prev;
      }
    });
  });
});
