// kiln.plot: line and scatter plots written as SVG by kiln itself (no native dependency).
//
//   kiln.plot.line(losses, { title: 'Training loss', xlabel: 'step', ylabel: 'loss', path: 'loss.svg' });
//   kiln.plot.figure({ title: 'Linear regression', xlabel: 'x0', ylabel: 'y' })
//     .scatter(x0, y, { label: 'data', size: 2 })
//     .line(xs, fit, { label: 'fit', color: 'red' })
//     .save('fit.svg');
//
// Each call returns the SVG text; given a path (Node) it also writes the file. Axes get "nice" ticks
// (1, 2 or 5 times a power of ten), a grid, a title, axis labels and a legend (placed in the corner
// that covers the fewest points). Non-finite values break a line and are left out of a scatter.

import { Tensor } from '../runtime/index.ts';
import { nodeFs, requireNode } from '../runtime/node.ts';

/** Numbers to plot: an array, a typed array, or a CPU tensor with one non-trivial dimension. */
export type Values = ArrayLike<number> | Tensor;

export interface FigureOptions {
  title?: string;
  xlabel?: string;
  ylabel?: string;
  /** Size in pixels (default 640 × 420). */
  width?: number;
  height?: number;
  /** Axis ranges; default: the data's range plus 5% on each side. */
  xlim?: readonly [number, number];
  ylim?: readonly [number, number];
  /** Tick positions on x, optionally with their own labels (categories: `{ values: [1, 2, 3], labels: ['a', 'b', 'c'] }`). */
  xticks?: readonly number[] | { values: readonly number[]; labels?: readonly string[] };
  /** Grid lines at the ticks (default true). */
  grid?: boolean;
  /** Where the legend goes (default 'auto': the emptiest corner; false: none). Shown when a series has a label. */
  legend?: 'auto' | 'upper right' | 'upper left' | 'lower right' | 'lower left' | false;
}

export interface SeriesOptions {
  /** The series' name in the legend. */
  label?: string;
  /** Any SVG color ('green', '#1f77b4', 'rgb(0, 128, 0)'); default: the next of matplotlib's ten. */
  color?: string;
  /** Line width in pixels (lines; default 2). */
  lineWidth?: number;
  /** Point radius in pixels (scatter, and line markers; default 3). */
  size?: number;
  /** Also draw a point at each value of a line. */
  marker?: boolean;
  /** A dashed line. */
  dashed?: boolean;
}

/** Options of the one-call forms: the figure's, the series', and a file to write. */
export type PlotOptions = FigureOptions & SeriesOptions & { path?: string };

interface Series extends SeriesOptions { kind: 'line' | 'scatter'; x: number[]; y: number[]; color: string }

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const FONT = 12;
/** the average advance of a 12px sans-serif character, for laying out text without measuring it */
const CHAR = 6.8;

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const r2 = (v: number): string => String(Math.round(v * 100) / 100);
/** clip-path ids unique within the page, so that several figures can be inlined into one HTML document */
let figures = 0;

function checkColor(op: string, color: string): string {
  // a color ends up in an attribute: allow what CSS color syntax needs, nothing that could close it
  if (!/^[#a-zA-Z0-9(),.%\s-]+$/.test(color)) throw new Error(`${op}: '${color}' is not a color (use a name like 'green', '#1f77b4' or 'rgb(0, 128, 0)')`);
  return color;
}

function toNumbers(op: string, name: string, v: Values): number[] {
  if (v instanceof Tensor) {
    const big = v.shape.filter((d) => d !== 1);
    if (big.length > 1) throw new Error(`${op}: ${name} must be a 1-D tensor (or [n, 1]), got shape [${v.shape.join(', ')}]`);
    return Array.from(v.dataSync() as ArrayLike<number>, Number);
  }
  if (v === null || typeof v !== 'object' || typeof v.length !== 'number') {
    throw new Error(`${op}: ${name} must be an array of numbers, a typed array or a tensor, got ${v === null ? 'null' : typeof v}`);
  }
  const items: unknown[] = Array.from(v);
  const bad = items.findIndex((e) => typeof e !== 'number');
  if (bad >= 0) throw new Error(`${op}: ${name}[${bad}] is not a number (${String(items[bad])})`);
  return items as number[];
}

function isValues(v: unknown): v is Values {
  return v instanceof Tensor || Array.isArray(v) || ArrayBuffer.isView(v);
}

/** About `count` evenly spaced round numbers covering [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of ten. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  const p = 10 ** Math.floor(Math.log10((hi - lo) / Math.max(1, count - 1)));
  // the candidate step whose tick count comes closest to `count` (the larger step on a tie)
  const fits = (step: number): number => Math.abs(Math.floor(hi / step) - Math.ceil(lo / step) + 1 - count);
  const step = [10, 5, 2.5, 2, 1].map((m) => m * p).reduce((best, s) => (fits(s) < fits(best) ? s : best));
  const ticks: number[] = [];
  // (toPrecision drops float noise such as 0.6000000000000001; + 0 turns -0 into 0)
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)) + 0);
  return ticks;
}

/** Tick labels with just the digits the step needs (0.25 → '0.25', 2000 → '2000', 1e-5 → '1e-5'). */
function tickLabels(ticks: number[]): string[] {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : Math.abs(ticks[0]) || 1;
  const big = Math.max(...ticks.map(Math.abs));
  if (big >= 1e6 || (big > 0 && big < 1e-4)) {
    // scientific notation with the fewest digits that keep the labels apart
    for (let d = 0; ; d++) {
      const labels = ticks.map((t) => (Math.abs(t) < step * 1e-9 ? '0' : t.toExponential(d).replace('+', '')));
      if (d >= 6 || new Set(labels).size === labels.length) return labels;
    }
  }
  let digits = 0;
  while (digits < 10 && Math.abs(Number(step.toFixed(digits)) - step) > step * 1e-6) digits++;
  return ticks.map((t) => (Math.abs(t) < step * 1e-9 ? 0 : t).toFixed(digits));
}

function range(op: string, axis: string, values: number[], lim: readonly [number, number] | undefined): [number, number] {
  if (lim) {
    if (!(Number.isFinite(lim[0]) && Number.isFinite(lim[1]) && lim[0] < lim[1])) throw new Error(`${op}: ${axis}lim must be two finite numbers, low < high, got [${lim.join(', ')}]`);
    return [lim[0], lim[1]];
  }
  // (a loop: spreading a million values into Math.min would overflow the stack)
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo > hi) throw new Error(`${op}: no finite ${axis} values to plot`);
  if (lo === hi) {
    const d = Math.abs(lo) * 0.1 || 1;
    return [lo - d, hi + d];
  }
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

/** A figure with any number of line and scatter series; `toSVG()` draws it, `save(path)` writes it. */
export class Figure {
  private readonly series: Series[] = [];

  constructor(readonly options: FigureOptions = {}) {
    const { width = 640, height = 420 } = options;
    if (!(width >= 200 && height >= 150)) throw new Error(`plot.figure: width and height must be at least 200 × 150 pixels, got ${width} × ${height}`);
  }

  /** A line through (x[i], y[i]); `line(y)` plots y against 0, 1, 2, ... */
  line(y: Values, options?: SeriesOptions): this;
  line(x: Values, y: Values, options?: SeriesOptions): this;
  line(a: Values, b?: Values | SeriesOptions, c?: SeriesOptions): this {
    if (isValues(b)) return this.add('line', 'plot.line', a, b, c ?? {});
    const y = toNumbers('plot.line', 'y', a);
    return this.add('line', 'plot.line', y.map((_, i) => i), y, b ?? {});
  }

  /** Points at (x[i], y[i]). */
  scatter(x: Values, y: Values, options: SeriesOptions = {}): this {
    return this.add('scatter', 'plot.scatter', x, y, options);
  }

  private add(kind: Series['kind'], op: string, xv: Values, yv: Values, o: SeriesOptions): this {
    const x = toNumbers(op, 'x', xv), y = toNumbers(op, 'y', yv);
    if (x.length !== y.length) throw new Error(`${op}: x and y must have the same length, got ${x.length} and ${y.length}`);
    if (x.length === 0) throw new Error(`${op}: nothing to plot (no values)`);
    for (const [name, v] of [['lineWidth', o.lineWidth], ['size', o.size]] as const) {
      if (v !== undefined && !(v > 0 && Number.isFinite(v))) throw new Error(`${op}: ${name} must be a positive number of pixels, got ${v}`);
    }
    const color = checkColor(op, o.color ?? PALETTE[this.series.length % PALETTE.length]);
    this.series.push({ ...o, kind, x, y, color });
    return this;
  }

  /** The figure as an SVG document. */
  toSVG(): string {
    const op = 'plot';
    if (this.series.length === 0) throw new Error(`${op}: the figure has no series (add one with line() or scatter())`);
    const o = this.options;
    const W = o.width ?? 640, H = o.height ?? 420;
    const [x0, x1] = range(op, 'x', this.series.flatMap((s) => s.x), o.xlim);
    const [y0, y1] = range(op, 'y', this.series.flatMap((s) => s.y), o.ylim);
    const xt = o.xticks === undefined ? null : Array.isArray(o.xticks) ? { values: o.xticks as readonly number[] } : (o.xticks as { values: readonly number[]; labels?: readonly string[] });
    if (xt?.labels && xt.labels.length !== xt.values.length) {
      throw new Error(`${op}: xticks has ${xt.values.length} values but ${xt.labels.length} labels`);
    }
    const xTicks = xt ? [...xt.values] : niceTicks(x0, x1);
    const xLabels = xt?.labels ? [...xt.labels] : tickLabels(xTicks);
    const yTicks = niceTicks(y0, y1);
    const yLabels = tickLabels(yTicks);

    // the plot area: room on the left for the widest y tick label and the y label
    const left = Math.ceil(Math.max(...yLabels.map((l) => l.length)) * CHAR + 14 + (o.ylabel ? FONT + 12 : 0));
    const top = o.title ? 40 : 14, right = 18, bottom = 32 + (o.xlabel ? FONT + 12 : 0);
    const pw = W - left - right, ph = H - top - bottom;
    const sx = (v: number): number => left + ((v - x0) / (x1 - x0)) * pw;
    const sy = (v: number): number => top + ph - ((v - y0) / (y1 - y0)) * ph;

    const clip = `kiln-plot-${++figures}`;
    const out: string[] = [];
    out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="${FONT}">`);
    out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
    out.push(`<clipPath id="${clip}"><rect x="${left}" y="${top}" width="${pw}" height="${ph}"/></clipPath>`);
    const inX = (v: number): boolean => v >= x0 - 1e-9 * (x1 - x0) && v <= x1 + 1e-9 * (x1 - x0);
    const inY = (v: number): boolean => v >= y0 - 1e-9 * (y1 - y0) && v <= y1 + 1e-9 * (y1 - y0);
    if (o.grid !== false) {
      const g: string[] = [];
      xTicks.filter(inX).forEach((t) => g.push(`M${r2(sx(t))} ${top}V${top + ph}`));
      yTicks.filter(inY).forEach((t) => g.push(`M${left} ${r2(sy(t))}H${left + pw}`));
      out.push(`<path class="grid" d="${g.join('')}" stroke="#e5e5e5" stroke-width="1" fill="none"/>`);
    }
    // ticks and their labels
    out.push(`<g class="xticks" text-anchor="middle" fill="#333">`);
    xTicks.forEach((t, i) => { if (inX(t)) out.push(`<text x="${r2(sx(t))}" y="${top + ph + FONT + 8}">${escapeXml(xLabels[i])}</text>`); });
    out.push('</g>', `<g class="yticks" text-anchor="end" fill="#333">`);
    yTicks.forEach((t, i) => { if (inY(t)) out.push(`<text x="${left - 7}" y="${r2(sy(t) + FONT * 0.35)}">${escapeXml(yLabels[i])}</text>`); });
    out.push('</g>');
    const tickMarks = [...xTicks.filter(inX).map((t) => `M${r2(sx(t))} ${top + ph}v4`), ...yTicks.filter(inY).map((t) => `M${left} ${r2(sy(t))}h-4`)];
    out.push(`<path d="${tickMarks.join('')}" stroke="#333" stroke-width="1"/>`);

    // the data, clipped to the plot area
    out.push(`<g clip-path="url(#${clip})">`);
    for (const s of this.series) {
      const pts = s.x.map((x, i) => [x, s.y[i]] as const);
      if (s.kind === 'line') {
        let d = '', pen = false;
        for (const [x, y] of pts) {
          if (!Number.isFinite(x) || !Number.isFinite(y)) { pen = false; continue; }
          d += `${pen ? 'L' : 'M'}${r2(sx(x))} ${r2(sy(y))}`;
          pen = true;
        }
        const dash = s.dashed ? ` stroke-dasharray="${r2((s.lineWidth ?? 2) * 3)} ${r2((s.lineWidth ?? 2) * 2)}"` : '';
        out.push(`<path class="line" d="${d}" fill="none" stroke="${escapeXml(s.color)}" stroke-width="${s.lineWidth ?? 2}" stroke-linejoin="round" stroke-linecap="round"${dash}/>`);
      }
      if (s.kind === 'scatter' || s.marker) {
        out.push(`<g class="points" fill="${escapeXml(s.color)}"${s.kind === 'scatter' ? ' fill-opacity="0.75"' : ''}>`);
        for (const [x, y] of pts) {
          if (Number.isFinite(x) && Number.isFinite(y)) out.push(`<circle cx="${r2(sx(x))}" cy="${r2(sy(y))}" r="${s.size ?? 3}"/>`);
        }
        out.push('</g>');
      }
    }
    out.push('</g>');
    out.push(`<rect class="frame" x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#333" stroke-width="1"/>`);

    if (o.title) {
      // centred over the plot area when it fits there, else over the figure; a long title gets smaller
      const size = Math.max(9, Math.min(FONT + 3, ((W - 16) / (o.title.length * CHAR * 1.12)) * FONT));
      const half = (o.title.length * CHAR * 1.12 * size) / FONT / 2;
      const cx = left + pw / 2 + half <= W - 8 ? left + pw / 2 : W / 2;
      out.push(`<text class="title" x="${r2(cx)}" y="24" text-anchor="middle" font-size="${r2(size)}" font-weight="bold">${escapeXml(o.title)}</text>`);
    }
    if (o.xlabel) out.push(`<text class="xlabel" x="${r2(left + pw / 2)}" y="${H - 10}" text-anchor="middle">${escapeXml(o.xlabel)}</text>`);
    if (o.ylabel) {
      const cy = r2(top + ph / 2);
      out.push(`<text class="ylabel" x="16" y="${cy}" transform="rotate(-90 16 ${cy})" text-anchor="middle" dominant-baseline="middle">${escapeXml(o.ylabel)}</text>`);
    }
    const labelled = this.series.filter((s) => s.label);
    if (labelled.length && o.legend !== false) out.push(this.legend(labelled, { left, top, pw, ph }, sx, sy));
    out.push('</svg>');
    return out.join('\n') + '\n';
  }

  private legend(entries: Series[], area: { left: number; top: number; pw: number; ph: number }, sx: (v: number) => number, sy: (v: number) => number): string {
    const lw = Math.ceil(Math.max(...entries.map((s) => s.label!.length)) * CHAR + 42), lh = entries.length * 18 + 10;
    const corners = {
      'upper right': [area.left + area.pw - lw - 8, area.top + 8],
      'upper left': [area.left + 8, area.top + 8],
      'lower right': [area.left + area.pw - lw - 8, area.top + area.ph - lh - 8],
      'lower left': [area.left + 8, area.top + area.ph - lh - 8],
    } as const;
    type Corner = keyof typeof corners;
    let where = this.options.legend ?? 'auto';
    if (where === 'auto' || where === false) {
      // the corner whose box covers the fewest points (lines: sampled every ~8 px along each segment);
      // ties keep matplotlib's order
      const samples: [number, number][] = [];
      for (const s of this.series) {
        for (let i = 0; i < s.x.length; i++) {
          const px = sx(s.x[i]), py = sy(s.y[i]);
          if (!Number.isFinite(px) || !Number.isFinite(py)) continue;
          samples.push([px, py]);
          if (s.kind !== 'line' || i + 1 === s.x.length) continue;
          const qx = sx(s.x[i + 1]), qy = sy(s.y[i + 1]);
          if (!Number.isFinite(qx) || !Number.isFinite(qy)) continue;
          const k = Math.min(1000, Math.floor(Math.hypot(qx - px, qy - py) / 8));
          for (let j = 1; j < k; j++) samples.push([px + ((qx - px) * j) / k, py + ((qy - py) * j) / k]);
        }
      }
      let best: Corner = 'upper right', fewest = Infinity;
      for (const c of Object.keys(corners) as Corner[]) {
        const [bx, by] = corners[c];
        let n = 0;
        for (const [px, py] of samples) if (px >= bx - 4 && px <= bx + lw + 4 && py >= by - 4 && py <= by + lh + 4) n++;
        if (n < fewest) { fewest = n; best = c; }
      }
      where = best;
    }
    const [bx, by] = corners[where];
    const out = [`<g class="legend">`, `<rect x="${r2(bx)}" y="${r2(by)}" width="${lw}" height="${lh}" fill="white" fill-opacity="0.85" stroke="#bbb" rx="3"/>`];
    entries.forEach((s, i) => {
      const cy = by + 14 + i * 18;
      const color = escapeXml(s.color);
      if (s.kind === 'line') out.push(`<path d="M${r2(bx + 8)} ${r2(cy)}h22" stroke="${color}" stroke-width="${s.lineWidth ?? 2}"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
      if (s.kind === 'scatter' || s.marker) out.push(`<circle cx="${r2(bx + 19)}" cy="${r2(cy)}" r="${Math.min(s.size ?? 3, 6)}" fill="${color}"/>`);
      out.push(`<text x="${r2(bx + 36)}" y="${r2(cy + FONT * 0.35)}">${escapeXml(s.label!)}</text>`);
    });
    out.push('</g>');
    return out.join('\n');
  }

  /** Writes the SVG to `path` (Node) and returns it. */
  save(path: string): string {
    const svg = this.toSVG();
    requireNode(nodeFs, 'plot: writing a file').writeFileSync(path, svg);
    return svg;
  }
}

export function figure(options: FigureOptions = {}): Figure {
  return new Figure(options);
}

function splitOptions(o: PlotOptions): [FigureOptions, SeriesOptions, string | undefined] {
  const { label, color, lineWidth, size, marker, dashed, path, ...fig } = o;
  return [fig, { label, color, lineWidth, size, marker, dashed }, path];
}

function finish(fig: Figure, path: string | undefined): string {
  return path === undefined ? fig.toSVG() : fig.save(path);
}

/** A one-series line plot: `line(y, opts)` or `line(x, y, opts)`; returns the SVG (and writes `opts.path`). */
export function line(y: Values, options?: PlotOptions): string;
export function line(x: Values, y: Values, options?: PlotOptions): string;
export function line(a: Values, b?: Values | PlotOptions, c?: PlotOptions): string {
  const opts = (isValues(b) ? c : b) ?? {};
  const [figOpts, series, path] = splitOptions(opts);
  const fig = new Figure(figOpts);
  if (isValues(b)) fig.line(a, b, series);
  else fig.line(a, series);
  return finish(fig, path);
}

/** A one-series scatter plot; returns the SVG (and writes `opts.path`). */
export function scatter(x: Values, y: Values, options: PlotOptions = {}): string {
  const [figOpts, series, path] = splitOptions(options);
  return finish(new Figure(figOpts).scatter(x, y, series), path);
}
