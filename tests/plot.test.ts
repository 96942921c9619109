// kiln.plot: the SVG is well-formed XML (checked by a real XML parser: helpers/xml.ts), data points land
// where the axes say, text is escaped, and bad input is a clear error.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { niceTicks } from '../utils/plot.ts';
import { parseSvg as parseXml, type XmlElement as El } from './helpers/xml.ts';

const { plot } = kiln;

const byClass = (els: El[], cls: string): El[] => els.filter((e) => e.attrib.class === cls);
const frameOf = (els: El[]) => {
  const f = byClass(els, 'frame')[0].attrib;
  return { x: Number(f.x), y: Number(f.y), w: Number(f.width), h: Number(f.height) };
};

describe('kiln.plot', () => {
  it('writes well-formed SVG with title, axis labels, ticks, grid and legend', () => {
    const svg = plot
      .figure({ title: 'Dose response', xlabel: 'Dose', ylabel: 'Effectiveness' })
      .line([0, 0.5, 1], [0, 1, 0], { label: 'model', color: 'green', lineWidth: 2.5 })
      .scatter([0, 0.5, 1], [0, 1, 0], { label: 'training data', size: 4 })
      .toSVG();
    const els = parseXml(svg);
    expect(byClass(els, 'title')[0].text).toBe('Dose response');
    expect(byClass(els, 'xlabel')[0].text).toBe('Dose');
    expect(byClass(els, 'ylabel')[0].text).toBe('Effectiveness');
    const texts = els.filter((e) => e.tag === 'text').map((e) => e.text);
    expect(texts).toEqual(expect.arrayContaining(['0.0', '0.2', '0.4', '0.6', '0.8', '1.0', 'model', 'training data']));
    expect(byClass(els, 'grid')).toHaveLength(1);
    expect(byClass(els, 'legend')).toHaveLength(1);
    expect(byClass(els, 'line')[0].attrib.stroke).toBe('green');
  });

  it('maps data to pixels: x from the left edge of the frame, y up from its bottom', () => {
    const svg = plot
      .figure({ xlim: [0, 10], ylim: [0, 100], width: 500, height: 300 })
      .scatter([0, 10, 5, 2.5], [0, 100, 25, 80])
      .line([0, 5, NaN, 7, 10], [10, 20, 30, 40, 50])
      .toSVG();
    const els = parseXml(svg);
    const f = frameOf(els);
    const px = (x: number) => f.x + (x / 10) * f.w;
    const py = (y: number) => f.y + f.h - (y / 100) * f.h;
    const circles = els.filter((e) => e.tag === 'circle').map((e) => [Number(e.attrib.cx), Number(e.attrib.cy)]);
    const want = [[0, 0], [10, 100], [5, 25], [2.5, 80]].map(([x, y]) => [px(x), py(y)]);
    expect(circles).toHaveLength(4);
    circles.forEach(([cx, cy], i) => {
      expect(cx).toBeCloseTo(want[i][0], 1);
      expect(cy).toBeCloseTo(want[i][1], 1);
    });
    // NaN breaks the line into two pieces
    const d = byClass(els, 'line')[0].attrib.d;
    const pieces = d.split('M').filter(Boolean).map((p) => p.split('L').map((xy) => xy.trim().split(' ').map(Number)));
    expect(pieces.map((p) => p.length)).toEqual([2, 2]);
    expect(pieces[1][1][0]).toBeCloseTo(px(10), 1);
    expect(pieces[1][1][1]).toBeCloseTo(py(50), 1);
    // ticks: 0, 2, ..., 10 on x, their labels centred on their pixel
    const xt = els.filter((e) => e.tag === 'text' && e.attrib.x !== undefined && ['0', '2', '4', '6', '8', '10'].includes(e.text));
    expect(xt.length).toBeGreaterThanOrEqual(6);
    expect(Number(xt.find((e) => e.text === '4')!.attrib.x)).toBeCloseTo(px(4), 1);
  });

  it('escapes text: titles, labels and tick labels with <, &, quotes stay text', () => {
    const evil = `a < b && "c" 'd' </svg><script>alert(1)</script>`;
    const svg = plot
      .figure({ title: evil, xlabel: '<x>', ylabel: '&y', xticks: { values: [1, 2], labels: ['<one>', 'tw"o'] } })
      .line([1, 2], [3, 4], { label: evil })
      .toSVG();
    const els = parseXml(svg);
    expect(els.some((e) => e.tag === 'script')).toBe(false);
    expect(byClass(els, 'title')[0].text).toBe(evil);
    expect(byClass(els, 'xlabel')[0].text).toBe('<x>');
    expect(byClass(els, 'ylabel')[0].text).toBe('&y');
    const texts = els.filter((e) => e.tag === 'text').map((e) => e.text);
    expect(texts).toEqual(expect.arrayContaining(['<one>', 'tw"o', evil]));
  });

  it('a title too long for the plot area is centred on the figure, in a smaller font', () => {
    const short = byClass(parseXml(plot.line([1, 2], { title: 'short' })), 'title')[0].attrib;
    const long = byClass(parseXml(plot.line([1, 2], { title: 'a very long title '.repeat(5) })), 'title')[0].attrib;
    expect(Number(short['font-size'])).toBe(15);
    expect(Number(long['font-size'])).toBeLessThan(12);
    expect(Number(long.x)).toBe(320);
  });

  it('puts the legend in the corner with the fewest points', () => {
    // clusters in three corners: only the lower right is free
    const corner = (x: number, y: number) => Array.from({ length: 10 }, (_, i) => [x + (i % 3) * 0.01, y - (i % 4) * 0.01]);
    const pts = [...corner(0.99, 0.99), ...corner(0.01, 0.99), ...corner(0.01, 0.05)];
    const els = parseXml(plot.scatter(pts.map((p) => p[0]), pts.map((p) => p[1]), { label: 'three corners' }));
    const f = frameOf(els);
    const box = els.find((e) => e.tag === 'rect' && e.attrib.stroke === '#bbb')!.attrib;
    const [bx, by] = [Number(box.x), Number(box.y)];
    expect(bx).toBeGreaterThan(f.x + f.w / 2); // right
    expect(by).toBeGreaterThan(f.y + f.h / 2); // lower
  });

  it('a line crossing a corner keeps the legend out of it, even between its vertices', () => {
    // one segment along the top, its ends far outside the view: no vertex near any corner
    const els = parseXml(plot.line([-10, 10], [0.9, 0.9], { label: 'flat', xlim: [0, 1], ylim: [0, 1] }));
    const f = frameOf(els);
    const box = els.find((e) => e.tag === 'rect' && e.attrib.stroke === '#bbb')!.attrib;
    expect(Number(box.y)).toBeGreaterThan(f.y + f.h / 2); // lower
  });

  it('takes CPU tensors (1-D or [n, 1]) and writes the file when given a path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-plot-'));
    const path = join(dir, 'fit.svg');
    const x = kiln.linspace(0, 1, 5);
    const svg = plot.scatter(x, x.mul(2).unsqueeze(1), { title: 'tensors', path });
    expect(readFileSync(path, 'utf8')).toBe(svg);
    const els = parseXml(svg);
    expect(els.filter((e) => e.tag === 'circle')).toHaveLength(5);
    const fig = plot.figure().line([1, 2, 3]);
    expect(fig.save(join(dir, 'y.svg'))).toBe(readFileSync(join(dir, 'y.svg'), 'utf8'));
  });

  it('draws long series (no spreading into Math.min)', () => {
    const y = Float32Array.from({ length: 200_000 }, (_, i) => Math.sin(i / 100));
    const svg = plot.line(y);
    expect(svg).toContain('<path class="line"');
    expect(svg.match(/L/g)!.length).toBeGreaterThanOrEqual(199_999);
  });

  it('chooses round ticks', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(-0.13, 2.47)).toEqual([0, 0.5, 1, 1.5, 2]);
    expect(niceTicks(0, 938)).toEqual([0, 200, 400, 600, 800]);
  });

  it('bad input is a clear error', () => {
    expect(() => plot.line([1, 2], [1, 2, 3])).toThrow('plot.line: x and y must have the same length, got 2 and 3');
    expect(() => plot.scatter([], [])).toThrow('plot.scatter: nothing to plot (no values)');
    expect(() => plot.line(kiln.zeros([3, 4]))).toThrow('plot.line: y must be a 1-D tensor (or [n, 1]), got shape [3, 4]');
    expect(() => plot.line([1, 2], { color: 'red" onload="x' })).toThrow(/plot.line: 'red" onload="x' is not a color/);
    expect(() => plot.line([NaN, NaN])).toThrow('plot: no finite y values to plot');
    expect(() => plot.line([1, 2], { ylim: [1, 0] })).toThrow('plot: ylim must be two finite numbers, low < high, got [1, 0]');
    expect(() => plot.figure().toSVG()).toThrow('plot: the figure has no series');
    expect(() => plot.line(['a', 'b'] as unknown as number[])).toThrow("plot.line: y[0] is not a number (a)");
    expect(() => plot.figure({ width: 10 })).toThrow('plot.figure: width and height must be at least 200 × 150 pixels, got 10 × 420');
    expect(() => plot.figure({ xticks: { values: [1, 2], labels: ['a'] } }).line([1, 2]).toSVG()).toThrow('plot: xticks has 2 values but 1 labels');
  });
});
