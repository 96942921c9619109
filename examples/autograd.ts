// The autograd demonstrations of seeds 002-004:
//  - 002: x ** w, a chain with ReLU (grads 9520, 7140, 5712), manual updates
//    under noGrad, optim.SGD with zeroGrad, the same chain as an nn.Module,
//    and training only w2 while w1 stays fixed;
//  - 003: gradFn, binaryCrossEntropyWithLogits, noGrad and detach, and
//    backward with retainGraph accumulating gradients (4/2, 8/4, zeroed, 4/2);
//  - 004: z = w*x + b, and the second derivative of z = x*x*y with createGraph
//    (x.grad = 12, then 6).
//
//   npx tsx examples/autograd.ts
//   npx tsx examples/autograd.ts --plot [file]   # seed 002's plot of the neurons' activations while only
//                                               # w2 trains (default file: activations.svg)

import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import * as kiln from '../index.ts';
import type { Tensor } from '../index.ts';
import { withPlotDefault } from './plot-arg.ts';

const { tensor, nn, F, optim } = kiln;

/** Seed 002's model: the chain w1 -> relu(w2 ·) -> w3 as an nn.Module. */
export class MyModel extends nn.Module {
  w1: kiln.nn.Parameter;
  w2: kiln.nn.Parameter;
  w3: kiln.nn.Parameter;

  constructor() {
    super();
    // Managed by the module, so no requiresGrad needed: Parameters require grad.
    this.w1 = new nn.Parameter(tensor([3.0]));
    this.w2 = new nn.Parameter(tensor([4.0]));
    this.w3 = new nn.Parameter(tensor([5.0]));
  }

  forward(x: Tensor): Tensor {
    x = this.w1.mul(x);
    x = F.relu(this.w2.mul(x));
    x = this.w3.mul(x);
    return x;
  }
}

/** Seed 002's exercise: only w2 (the output weight) trains; w1 is a plain tensor. */
export class MyModelW2Only extends nn.Module {
  w1: Tensor;
  w2: kiln.nn.Parameter;
  hiddenActivation: Tensor | null = null;

  constructor() {
    super();
    this.w1 = tensor([1.0]); // not a Parameter, so no optimizer updates it
    this.w2 = new nn.Parameter(tensor([1.0]));
  }

  forward(x: Tensor): Tensor {
    this.hiddenActivation = x.mul(this.w1); // w1 is fixed
    return this.hiddenActivation.mul(this.w2);
  }
}

export interface AutogradResult {
  /** d(x1 ** w1)/dw1 at x1 = 2, w1 = 3: 8 ln 2. */
  powGrad: number;
  /** Gradients of (w3·relu(w2·w1·x1) − 1)² at x1 = 2, w = 3, 4, 5. */
  chainGrads: { w1: number; w2: number; w3: number };
  /** w1..w3 after one manual update with learning rate 0.01. */
  manualUpdate: number[];
  /** Loss after 100 SGD steps (lr 0.01) of the plain chain and of MyModel. */
  sgdFinalLoss: number;
  moduleFinalLoss: number;
  /** w2 after 20 epochs of training only w2. */
  w2Only: number;
  /** [input, hidden, output] activations of each of those epochs (the seed plots them). */
  activations: number[][];
  /** z = w*x + b at x = 1, b = 2, w = 3. */
  linearGrads: { x: number; w: number; b: number };
  /** eye(5) → (inp + 1)²: [diagonal, off-diagonal] of inp.grad after each backward. */
  retainGraph: { first: [number, number]; second: [number, number]; zeroed: [number, number]; afterZero: [number, number] };
  /** x.grad after z.backward({createGraph}) (12) and after x.grad.backward() from a zeroed grad (6). */
  secondDerivative: { first: number; second: number };
  /** requiresGrad of z = xw + b normally, under noGrad, and of z.detach(). */
  requiresGrad: { normal: boolean; noGrad: boolean; detached: boolean };
  /** gradFn names of z and of the BCE-with-logits loss. */
  gradFns: { z: string | null; loss: string | null };
}

async function diagAndOff(t: Tensor): Promise<[number, number]> {
  const v = await t.data();
  return [v[0], v[1]];
}

export async function run(options: { log?: boolean; plot?: string } = {}): Promise<AutogradResult> {
  const { log = true, plot } = options;
  const print = (...args: unknown[]): void => {
    if (log) console.log(...args);
  };
  const show = (t: Tensor | null): string => (t === null ? 'null' : t.toString());

  // ---- seed 002: autograd --------------------------------------------------
  print('== x2 = x1 ** w1 ==');
  const powGrad = await (async () => {
    const x1 = tensor([2.0]); // a 1-D tensor; float, so that it can be differentiated
    const w1 = tensor([3.0], { requiresGrad: true }); // the variable to differentiate against
    const x2 = x1.pow(w1);
    x2.backward();
    print('dx2/dw1 =', show(w1.grad)); // 8 ln 2
    return w1.grad!.item();
  })();

  print('\n== a deeper chain with ReLU ==');
  const x1 = tensor([2.0]);
  let w1 = tensor([3.0], { requiresGrad: true });
  let w2 = tensor([4.0], { requiresGrad: true });
  let w3 = tensor([5.0], { requiresGrad: true });
  const target = tensor([1.0]);
  {
    const x2 = w1.mul(x1);
    const x3 = F.relu(w2.mul(x2)); // sigmoid instead: kiln.sigmoid(w2.mul(x2))
    const x4 = w3.mul(x3);
    const loss = x4.sub(target).pow(2);
    loss.backward();
    print(show(w1.grad)); // dloss/dw1
    print(show(w2.grad)); // dloss/dw2
    print(show(w3.grad)); // dloss/dw3
  }
  const chainGrads = { w1: await w1.grad!.item(), w2: await w2.grad!.item(), w3: await w3.grad!.item() };

  print('\n== a manual gradient-descent step, under noGrad ==');
  // Updating w1 directly would be recorded in the graph; noGrad makes it a plain numeric update.
  const learningRate = 0.01;
  const parameters = [w1, w2, w3];
  kiln.noGrad(() => {
    for (const p of parameters) p.sub_(p.grad!.mul(learningRate));
  });
  const manualUpdate = await Promise.all(parameters.map((p) => p.item()));
  print('w1, w2, w3 =', manualUpdate.map((v) => v.toFixed(2)).join(', '));

  print('\n== optim.SGD, 100 steps ==');
  // The seed's learning rate 0.01 is far too large for gradients near 10^4: the
  // first step already overshoots (see above) and the loss blows up to inf/NaN,
  // exactly as it does in PyTorch. (Seed 004: too large a learning rate diverges.)
  w1 = tensor([3.0], { requiresGrad: true });
  w2 = tensor([4.0], { requiresGrad: true });
  w3 = tensor([5.0], { requiresGrad: true });
  const optimizer = new optim.SGD([w1, w2, w3], { lr: 0.01 }); // wraps the `for p of parameters` update
  const modelPredict = (): Tensor => w3.mul(F.relu(w2.mul(w1.mul(x1))));
  let sgdFinalLoss = 0;
  for (let i = 0; i < 100; i++) {
    const loss = modelPredict().sub(target).pow(2);
    loss.backward();
    optimizer.step(); // one gradient-descent step
    optimizer.zeroGrad(); // gradients accumulate, so clear them
    if (i === 99) sgdFinalLoss = await loss.item();
  }
  print(`loss after 100 steps: ${sgdFinalLoss.toExponential(4)}; w1, w2, w3 = ${(await Promise.all([w1, w2, w3].map((p) => p.item()))).map((v) => v.toFixed(4)).join(', ')}`);

  print('\n== the same as an nn.Module ==');
  const myModel = new MyModel();
  const moduleOptimizer = new optim.SGD(myModel.parameters(), { lr: 0.01 }); // finds w1, w2, w3 itself
  let moduleFinalLoss = 0;
  for (let i = 0; i < 100; i++) {
    const output = myModel.forward(x1);
    const loss = output.sub(target).pow(2);
    loss.backward();
    moduleOptimizer.step();
    moduleOptimizer.zeroGrad();
    if (i === 99) moduleFinalLoss = await loss.item();
  }
  print(`loss after 100 steps: ${moduleFinalLoss.toExponential(4)} (diverged, same lr); output = ${myModel.forward(x1).detach().toString()}`);

  print('\n== exercise: only w2 changes ==');
  const myModelW2 = new MyModelW2Only();
  const optimizerW2 = new optim.SGD([myModelW2.w2], { lr: 0.01 }); // optimizes only w2
  const input = tensor([1.0]);
  const target2 = tensor([2.0]);
  const epochs = 20;
  const activations: number[][] = [];
  for (let epoch = 0; epoch < epochs; epoch++) {
    const output = myModelW2.forward(input);
    const loss = output.sub(target2).pow(2);
    loss.backward();
    optimizerW2.step();
    optimizerW2.zeroGrad();
    activations.push([await input.item(), await myModelW2.hiddenActivation!.item(), await output.item()]);
    print(
      `Epoch [${epoch + 1}/${epochs}], Loss: ${(await loss.item()).toFixed(4)}, ` +
        `w1: ${(await myModelW2.w1.item()).toFixed(4)} (fixed), w2: ${(await myModelW2.w2.item()).toFixed(4)}`,
    );
  }
  const w2Only = await myModelW2.w2.item();
  if (plot !== undefined) {
    // one line per epoch over the three neurons; the legend names epochs 1, 5, 10, 15 and 20, as the seed's
    const fig = kiln.plot.figure({
      title: 'Exercise: neuron activations while only w2 trains (w1 fixed = 1.0)',
      xlabel: 'neuron',
      ylabel: 'activation value',
      xticks: { values: [1, 2, 3], labels: ['Input Neuron', 'Hidden Neuron', 'Output Neuron'] },
      xlim: [0.6, 3.4],
    });
    // later epochs darker (light to dark blue), so that twenty lines stay apart
    const shade = (i: number): string => {
      const t = i / (epochs - 1);
      const mix = (a: number, b: number): number => Math.round(a + (b - a) * t);
      return `rgb(${mix(158, 8)}, ${mix(202, 48)}, ${mix(225, 107)})`;
    };
    activations.forEach((a, i) => {
      fig.line([1, 2, 3], a, { marker: true, color: shade(i), label: (i + 1) % 5 === 0 || i === 0 ? `Epoch ${i + 1}` : undefined });
    });
    fig.save(plot);
    print(`wrote ${plot}`);
  }

  // ---- seed 004: z = w*x + b -----------------------------------------------
  print('\n== z = w*x + b ==');
  const linearGrads = await (async () => {
    const x = tensor(1.0, { requiresGrad: true });
    const b = tensor(2.0, { requiresGrad: true });
    const w = tensor(3.0, { requiresGrad: true });
    const z = w.mul(x).add(b);
    z.backward();
    print(show(x.grad)); // dz/dx
    print(show(w.grad)); // dz/dw
    print(show(b.grad)); // dz/db
    return { x: await x.grad!.item(), w: await w.grad!.item(), b: await b.grad!.item() };
  })();

  print('\n== a second derivative: z = x * x * y ==');
  const secondDerivative = await (async () => {
    const x = tensor(2.0).requiresGrad_();
    const y = tensor(3.0).requiresGrad_();
    const z = x.mul(x).mul(y);
    z.backward({ createGraph: true }); // x.grad = 2xy = 12, and it has a graph
    print(show(x.grad));
    const first = await x.grad!.item();
    const gx = x.grad!;
    // backward accumulates into .grad, so zero it first (the seed's x.grad.data.zero_())
    kiln.noGrad(() => gx.zero_());
    gx.backward(); // d(2xy)/dx = 2y = 6
    print(show(x.grad));
    return { first, second: await x.grad!.item() };
  })();

  // ---- seed 003: gradFn, BCE with logits, noGrad, detach, retainGraph ------
  print('\n== binaryCrossEntropyWithLogits ==');
  kiln.manualSeed(0);
  const x = kiln.ones([5]); // input tensor
  const y = kiln.zeros([3]); // expected output
  const w = kiln.randn([5, 3], { requiresGrad: true });
  const b = kiln.randn([3], { requiresGrad: true }); // same as randn([3]).requiresGrad_(true)
  let z = x.matmul(w).add(b);
  const loss = F.binaryCrossEntropyWithLogits(z, y);
  print('Gradient function for z =', z.gradFn);
  print('Gradient function for loss =', loss.gradFn);
  const gradFns = { z: z.gradFn, loss: loss.gradFn };
  loss.backward(); // only once, unless retainGraph: true
  print(show(w.grad));
  print(show(b.grad));

  print('\n== stopping gradient tracking ==');
  z = x.matmul(w).add(b);
  print(z.requiresGrad); // true
  const normal = z.requiresGrad;
  z = kiln.noGrad(() => x.matmul(w).add(b));
  print(z.requiresGrad); // false
  const noGradFlag = z.requiresGrad;
  z = x.matmul(w).add(b);
  const zDet = z.detach();
  print(zDet.requiresGrad); // false

  print('\n== backward with retainGraph accumulates ==');
  const inp = kiln.eye(5, { requiresGrad: true });
  const out = inp.add(1).pow(2);
  out.backward(kiln.onesLike(inp), { retainGraph: true });
  print('First call\n', show(inp.grad));
  const first = await diagAndOff(inp.grad!);
  out.backward(kiln.onesLike(inp), { retainGraph: true });
  print('\nSecond call\n', show(inp.grad));
  const second = await diagAndOff(inp.grad!);
  inp.grad!.zero_();
  const zeroed = await diagAndOff(inp.grad!);
  out.backward(kiln.onesLike(inp), { retainGraph: true });
  print('\nCall after zeroing gradients\n', show(inp.grad));
  const afterZero = await diagAndOff(inp.grad!);

  return {
    powGrad,
    chainGrads,
    manualUpdate,
    sgdFinalLoss,
    moduleFinalLoss,
    w2Only,
    activations,
    linearGrads,
    retainGraph: { first, second, zeroed, afterZero },
    secondDerivative,
    requiresGrad: { normal, noGrad: noGradFlag, detached: zDet.requiresGrad },
    gradFns,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ args: withPlotDefault(process.argv.slice(2), 'activations.svg'), options: { plot: { type: 'string' } } });
  await run({ plot: values.plot });
}
