// The playground page: trains the quickstart's MNIST MLP with a compiled step on WebGPU (or on the
// CPU, with a note, where the browser has none), plots the loss live, measures test accuracy, and
// lists what kiln generated. Query parameters: steps (default one epoch, 938), test (test images,
// default 10000), device=cpu (skip WebGPU). `window.kilnPlayground` reports progress to tests.

import * as kiln from '../index.ts';
import type { Tensor } from '../index.ts';

const { nn, F, optim, data } = kiln;
type Device = 'cpu' | 'webgpu';

interface PlaygroundState {
  state: 'running' | 'done' | 'error';
  device?: Device;
  note?: string;
  losses: { step: number; loss: number }[];
  accuracy?: number;
  kernels?: number;
  error?: string;
}
const report: PlaygroundState = { state: 'running', losses: [] };
(window as unknown as { kilnPlayground: PlaygroundState }).kilnPlayground = report;

const params = new URLSearchParams(location.search);
function count(name: string, fallback: number): number {
  const v = Number(params.get(name) ?? fallback);
  if (!Number.isInteger(v) || v < 1) throw new Error(`playground: ?${name}= expects a positive integer, got '${params.get(name)}'`);
  return v;
}

const el = (id: string): HTMLElement => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`playground: the page has no #${id}`);
  return e;
};
const show = (id: string, text: string): void => { el(id).textContent = text; };
const nextFrame = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

/** WebGPU where the browser has an adapter; else the CPU and the reason, shown on the page. */
async function chooseDevice(): Promise<{ device: Device; note?: string }> {
  if (params.get('device') === 'cpu') return { device: 'cpu', note: 'Training on the CPU (?device=cpu): kiln runs its generated JavaScript kernels.' };
  try {
    await kiln.webgpu.init();
    return { device: 'webgpu' };
  } catch (e) {
    return { device: 'cpu', note: `WebGPU is not available in this browser, so kiln trains on the CPU instead (generated JavaScript kernels; slower). ${(e as Error).message}` };
  }
}

const SVG = 'http://www.w3.org/2000/svg';
function svg<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Redraws the loss curve: steps on x (0..total), loss on y (0..the largest loss seen). */
function plot(points: { step: number; loss: number }[], total: number): void {
  const root = el('plot');
  const width = Number(root.getAttribute('width')), height = Number(root.getAttribute('height'));
  const m = { left: 44, right: 12, top: 10, bottom: 30 };
  const w = width - m.left - m.right, h = height - m.top - m.bottom;
  const top = Math.max(0.5, ...points.map((p) => p.loss)) * 1.05;
  const x = (s: number): number => m.left + (s / total) * w;
  const y = (l: number): number => m.top + h - (l / top) * h;
  root.replaceChildren(svg('rect', { x: m.left, y: m.top, width: w, height: h, fill: 'none', stroke: '#ccc' }));
  for (let i = 0; i <= 4; i++) {
    const l = (top * i) / 4, s = Math.round((total * i) / 4);
    root.append(svg('line', { x1: m.left, x2: m.left + w, y1: y(l), y2: y(l), stroke: '#eee' }));
    root.append(svg('text', { x: m.left - 6, y: y(l) + 4, 'text-anchor': 'end' }, l.toFixed(2)));
    root.append(svg('text', { x: x(s), y: m.top + h + 16, 'text-anchor': 'middle' }, String(s)));
  }
  root.append(svg('text', { x: m.left + w / 2, y: height - 2, 'text-anchor': 'middle' }, 'step'));
  if (points.length > 0) {
    const d = points.map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ');
    root.append(svg('polyline', { points: d, fill: 'none', stroke: '#d2561b', 'stroke-width': 2 }));
  }
}

function listing(title: string, text: string, open = false): HTMLDetailsElement {
  const details = document.createElement('details');
  details.open = open;
  const summary = document.createElement('summary');
  summary.textContent = title;
  const pre = document.createElement('pre');
  pre.textContent = text;
  details.append(summary, pre);
  return details;
}

function showLowered(lowered: kiln.Lowered): void {
  const root = el('listings');
  for (const part of ['forward', 'backward', 'update', 'optimized'] as const) {
    const text = lowered[part].toString();
    root.append(listing(`${text.split('\n')[0]}`, text));
  }
  lowered.kernels.forEach((k, i) => {
    root.append(listing(`kernel ${i}: ${k.name} (${k.language}, ${k.ops.length} IR nodes)`, k.source, i === 0));
  });
}

async function main(): Promise<void> {
  const steps = count('steps', 938), testSize = count('test', 10000), batchSize = 64;
  const { device, note } = await chooseDevice();
  report.device = device;
  show('device', device === 'webgpu' ? 'WebGPU' : 'CPU');
  if (note) {
    report.note = note;
    el('note').textContent = note;
    el('note').hidden = false;
  }
  plot([], steps);

  show('status', 'loading MNIST…');
  const [train, test] = await Promise.all([
    data.mnist({ split: 'train', source: '/mnist/' }),
    data.mnist({ split: 'test', source: '/mnist/' }),
  ]);
  // PyTorch's MNIST example standardizes with the training set's mean and std.
  const standardize = (ds: kiln.data.TensorDataset, n: number): kiln.data.TensorDataset =>
    new data.TensorDataset(ds.tensors[0].index([0, n]).sub(0.1307).div(0.3081), ds.tensors[1].index([0, n]));

  kiln.manualSeed(0);
  const model = new nn.Sequential(new nn.Flatten(), new nn.Linear(784, 512), new nn.ReLU(), new nn.Linear(512, 512), new nn.ReLU(), new nn.Linear(512, 10)).to(device);
  const optimizer = new optim.SGD(model.parameters(), { lr: 0.1 });
  const step = kiln.compile((x: Tensor, y: Tensor) => {
    const loss = F.crossEntropy(model.forward(x), y);
    loss.backward();
    optimizer.step();
    optimizer.zeroGrad();
    return loss;
  });

  show('status', 'training…');
  const loader = new data.DataLoader(standardize(train, train.length), { batchSize, shuffle: true, seed: 0 });
  const every = Math.max(1, Math.round(steps / 150));
  let done = 0;
  let example: [Tensor, Tensor] | null = null;
  const t0 = performance.now();
  while (done < steps) {
    for (const [xb, yb] of loader) {
      const x = xb.to(device), y = yb.to(device);
      example ??= [x, y];
      const loss = await step(x, y);
      done++;
      if (done % every === 0 || done === steps) {
        const value = await loss.item();
        report.losses.push({ step: done, loss: value });
        show('step', `${done} / ${steps}`);
        show('loss', value.toFixed(4));
        plot(report.losses, steps);
        await nextFrame();
      }
      if (done === steps) break;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  // The listings of the step as trained (before eval() changes the mode).
  if (example) {
    const lowered = await step.lower(...example);
    report.kernels = lowered.kernels.length;
    showLowered(lowered);
  }

  show('status', 'testing…');
  model.eval();
  let correct = 0;
  for (const [xb, yb] of new data.DataLoader(standardize(test, Math.min(testSize, test.length)), { batchSize: 1000 })) {
    const x = xb.to(device), y = yb.to(device);
    correct += await kiln.noGrad(() => model.forward(x).argmax(1).eq(y).float().sum()).item();
  }
  report.accuracy = correct / Math.min(testSize, test.length);
  show('accuracy', `${(100 * report.accuracy).toFixed(1)}%`);
  show('status', `${steps} steps in ${seconds.toFixed(1)} s (${(steps / seconds).toFixed(1)} steps/s); accuracy on ${Math.min(testSize, test.length)} test images.`);
  report.state = 'done';
}

el('again').addEventListener('click', () => location.reload());
main().then(
  () => { (el('again') as HTMLButtonElement).disabled = false; },
  (e: unknown) => {
    report.state = 'error';
    report.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    show('status', `error: ${report.error}`);
  },
);
