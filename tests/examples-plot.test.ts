// The examples draw: dose.ts, linear-regression.ts and mnist-mlp.ts write their SVG plots with
// `--plot [file]`, and mnist-mlp.ts run as a program shows its progress line and ends with the accuracy.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { run as runDose } from '../examples/dose.ts';
import { run as runLinearRegression } from '../examples/linear-regression.ts';
import { run as runAutograd } from '../examples/autograd.ts';
import { withPlotDefault } from '../examples/plot-arg.ts';
import { parseSvg, type XmlElement } from './helpers/xml.ts';

const tmp = (): string => mkdtempSync(join(tmpdir(), 'kiln-examples-'));
const texts = (els: XmlElement[]): string[] => els.filter((e) => e.tag === 'text').map((e) => e.text);
/** The pixel points of a line series' path. */
const pathPoints = (d: string): number[][] => d.split(/[ML]/).filter(Boolean).map((p) => p.trim().split(' ').map(Number));

describe('examples --plot', () => {
  it('--plot alone takes the default file; --plot FILE keeps it', () => {
    expect(withPlotDefault(['--plot'], 'a.svg')).toEqual(['--plot', 'a.svg']);
    expect(withPlotDefault(['--plot', '--compile'], 'a.svg')).toEqual(['--plot', 'a.svg', '--compile']);
    expect(withPlotDefault(['--plot', 'b.svg', '--compile'], 'a.svg')).toEqual(['--plot', 'b.svg', '--compile']);
    expect(withPlotDefault(['--compile'], 'a.svg')).toEqual(['--compile']);
  });

  it('dose.ts draws the dose-response curve: zero, a peak of ~1 at dose 0.5, zero', async () => {
    const path = join(tmp(), 'dose.svg');
    const r = await runDose({ log: false, plot: path });
    expect(r.stoppedAtEpoch).toBe(34);
    const els = parseSvg(readFileSync(path, 'utf8'));
    expect(texts(els)).toEqual(expect.arrayContaining(['Dose', 'Effectiveness', 'model', 'training data']));
    const pts = pathPoints(els.find((e) => e.attrib.class === 'line')!.attrib.d);
    expect(pts).toHaveLength(101);
    const ys = pts.map((p) => p[1]); // pixels: smaller is higher
    const top = Math.min(...ys);
    expect(ys.indexOf(top)).toBe(50); // the peak at dose 0.5
    expect(ys[0]).toBe(ys[100]); // zero at both ends
    expect(ys[0] - top).toBeGreaterThan(200); // a tall peak
    expect(els.filter((e) => e.tag === 'circle')).toHaveLength(3 + 1); // the three training points, and the legend's
  });

  it('linear-regression.ts draws the data against each feature and the two fitted lines', async () => {
    const path = join(tmp(), 'fit.svg');
    const r = await runLinearRegression({ log: false, plot: path });
    const els = parseSvg(readFileSync(path, 'utf8'));
    expect(els.filter((e) => e.tag === 'circle').length).toBe(2000 + 2); // 1000 samples × 2 features, and the legend's
    const labels = texts(els);
    expect(labels).toContain(`fit: y = ${r.w[0].toFixed(2)}·x0 + ${r.b.toFixed(2)}`);
    expect(labels).toContain(`fit: y = ${r.w[1].toFixed(2)}·x1 + ${r.b.toFixed(2)}`);
    expect(labels).toContain('fit: y = 2.00·x0 + 4.20');
    // the x0 line rises and the x1 line falls
    const [l0, l1] = els.filter((e) => e.attrib.class === 'line').map((e) => pathPoints(e.attrib.d));
    expect(l0[1][1]).toBeLessThan(l0[0][1]);
    expect(l1[1][1]).toBeGreaterThan(l1[0][1]);
  });

  it("autograd.ts draws seed 002's activations: one line per epoch over three named neurons", async () => {
    const path = join(tmp(), 'activations.svg');
    const r = await runAutograd({ log: false, plot: path });
    expect(r.activations).toHaveLength(20);
    const els = parseSvg(readFileSync(path, 'utf8'));
    expect(texts(els)).toEqual(expect.arrayContaining(['Input Neuron', 'Hidden Neuron', 'Output Neuron', 'Epoch 1', 'Epoch 5', 'Epoch 20']));
    expect(texts(els)).not.toContain('Epoch 2');
    const lines = els.filter((e) => e.attrib.class === 'line').map((e) => pathPoints(e.attrib.d));
    expect(lines).toHaveLength(20);
    // input and hidden activations stay 1 (w1 is fixed); the output rises with w2, epoch after epoch
    const outputs = lines.map((l) => l[2][1]);
    for (const l of lines) expect(l[0][1]).toBe(lines[0][0][1]);
    for (let i = 1; i < 20; i++) expect(outputs[i]).toBeLessThan(outputs[i - 1]); // higher is a smaller pixel y
  });

  it('mnist-mlp.ts as a program: a progress line on stderr, the loss curve in loss.svg, the accuracy last', () => {
    const cwd = tmp();
    const tsx = fileURLToPath(new URL('../node_modules/.bin/tsx', import.meta.url));
    const script = fileURLToPath(new URL('../examples/mnist-mlp.ts', import.meta.url));
    const r = spawnSync(tsx, [script, '--limit', '2560', '--test-limit', '200', '--plot'], { cwd, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^epoch 1\/1: 100% 40\/40 \[\d\d:\d\d<00:00, [\d.]+ it\/s, loss=[\d.]+\]$/m);
    const out = r.stdout.trim().split('\n');
    expect(out.at(-1)).toMatch(/^Done! Test accuracy: \d+\.\d%$/);
    expect(out).toContain('wrote loss.svg');
    expect(existsSync(join(cwd, 'loss.svg'))).toBe(true);
    const els = parseSvg(readFileSync(join(cwd, 'loss.svg'), 'utf8'));
    expect(texts(els)).toEqual(expect.arrayContaining(['epoch', 'cross-entropy loss', 'training (mean of 20 batches)', 'test (after each epoch)']));
    const curve = pathPoints(els.find((e) => e.attrib.class === 'line')!.attrib.d);
    expect(curve).toHaveLength(2); // 40 batches: two points, each the mean of 20
  }, 120_000);
});
