// A tqdm-style progress line for training loops (kiln.utils.progress).
//
//   const bar = kiln.utils.progress(loader, { desc: 'epoch 1' });
//   for (const [x, y] of bar) { const loss = step(x, y); bar.set({ loss }); }
//
// prints `epoch 1:  45%|███████▏        | 423/938 [00:05<00:06, 84.10 it/s, loss=0.3412]` on stderr.
// On a TTY the line is redrawn in place (at most every 0.1 s); elsewhere (CI logs, pipes, a browser's
// console) a plain line is printed every `interval` seconds and once when the loop ends. Values given
// to `set` may be tensors, and reporting the loss every step never makes a step wait: a CPU tensor is
// read when a line is drawn; a WebGPU tensor is read in the background (one read at a time, started
// by `set` when none is under way), and lines show the last value that arrived.

import { Tensor } from '../runtime/index.ts';

/** Where the line goes: Node's `process.stderr` fits, as does any object with `write`. */
export interface ProgressStream {
  write(text: string): unknown;
  /** redraw one line in place (a terminal) rather than print whole lines */
  isTTY?: boolean;
  /** the terminal's width; the line is cut to it so that it never wraps */
  columns?: number;
}

export interface ProgressOptions {
  /** Steps in one pass; default: the source's `length` (a DataLoader's batches, an array's items). */
  total?: number;
  /** A label before the counts, e.g. 'epoch 1'. */
  desc?: string;
  /** Default: `process.stderr` in Node; elsewhere plain lines through `console.log`. */
  stream?: ProgressStream;
  /** Seconds between plain lines when the stream is not a TTY (default 10). */
  interval?: number;
  /** Where `bar.write(text)` prints (default `console.log`). */
  print?: (text: string) => void;
  /** The clock in milliseconds (default `performance.now`); tests inject their own. */
  now?: () => number;
  /** Iterate without drawing anything (e.g. when a program runs quietly). */
  disable?: boolean;
}

export type ProgressValue = number | Tensor;

const REDRAW_MS = 100;
const BLOCKS = ' ▏▎▍▌▋▊▉█';

/** Node's stderr; where there is none (a browser), plain lines through console.log. */
export function defaultStream(global: { process?: { stderr?: ProgressStream } } = globalThis): ProgressStream {
  return global.process?.stderr ?? { write: (text: string) => console.log(text.replace(/\n$/, '')), isTTY: false };
}

function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  const mm = String(Math.floor(s / 60) % 60).padStart(2, '0'), ss = String(s % 60).padStart(2, '0');
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}

const num = (v: number): string => (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5) ? v.toExponential(3) : String(Number(v.toPrecision(4))));

/** Wraps an iterable (or a count: `progress(100)` iterates 0..99) and draws a progress line as it is consumed. */
export function progress<T>(source: Iterable<T> | AsyncIterable<T>, options?: ProgressOptions): Progress<T>;
export function progress(source: number, options?: ProgressOptions): Progress<number>;
export function progress<T>(source: Iterable<T> | AsyncIterable<T> | number, options: ProgressOptions = {}): Progress<T | number> {
  if (typeof source === 'number') {
    if (!Number.isInteger(source) || source < 0) throw new Error(`progress: a count must be a non-negative integer, got ${source}`);
    const n = source;
    return new Progress((function* () { for (let i = 0; i < n; i++) yield i; })(), { total: n, ...options });
  }
  return new Progress<T>(source, options);
}

export class Progress<T> implements Iterable<T>, AsyncIterable<T> {
  /** Steps done so far. */
  n = 0;
  readonly total: number | null;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private start: number;
  private lastDraw = -Infinity;
  private lastWidth = 0;
  private started = false;
  private closed = false;
  /** something changed since the line was last drawn */
  private dirty = true;
  private readonly values = new Map<string, ProgressValue>();
  /** the last value read of each device tensor value, and the names whose read is under way */
  private readonly readValues = new Map<string, number>();
  private readonly reading = new Set<string>();

  constructor(private readonly source: Iterable<T> | AsyncIterable<T>, private readonly options: ProgressOptions = {}) {
    const iterable = source as Partial<Iterable<T> & AsyncIterable<T>> | null;
    if (typeof iterable?.[Symbol.iterator] !== 'function' && typeof iterable?.[Symbol.asyncIterator] !== 'function') {
      throw new Error(`progress: expected an iterable (a DataLoader, an array, a generator) or a count, got ${source === null ? 'null' : typeof source}`);
    }
    const length = (source as { length?: unknown }).length;
    const total = options.total ?? (typeof length === 'number' ? length : null);
    if (total !== null && (!Number.isInteger(total) || total < 0)) throw new Error(`progress: total must be a non-negative integer, got ${total}`);
    const interval = options.interval ?? 10;
    if (!(interval > 0)) throw new Error(`progress: interval must be a positive number of seconds, got ${interval}`);
    this.total = total;
    this.stream = options.stream ?? defaultStream();
    this.now = options.now ?? (() => performance.now());
    this.start = this.now();
    // a plain stream prints its first line after one interval, not at the start
    if (!this.stream.isTTY) this.lastDraw = this.start;
  }

  *[Symbol.iterator](): Iterator<T> {
    const it = this.source as Iterable<T>;
    if (typeof it[Symbol.iterator] !== 'function') throw new Error('progress: this source is only async-iterable; use `for await (... of progress(...))`');
    this.begin();
    try {
      this.draw(false);
      for (const item of it) {
        yield item;
        this.update();
      }
    } finally {
      this.close();
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    this.begin();
    try {
      this.draw(false);
      for await (const item of this.source) {
        yield item;
        this.update();
      }
    } finally {
      this.close();
    }
  }

  private begin(): void {
    if (this.started) throw new Error('progress: a progress line goes through its source once; make a new one for each pass (epoch)');
    this.started = true;
    // the clock starts with the loop, not when the line was made
    this.start = this.now();
    if (!this.stream.isTTY) this.lastDraw = this.start;
  }

  /** Reports values shown after the counts (`bar.set({ loss })`); a tensor must hold one element. */
  set(values: Record<string, ProgressValue>): void {
    const entries = Object.entries(values);
    // check all before keeping any, so that a bad value changes nothing
    for (const [name, v] of entries) {
      if (typeof v === 'number') continue;
      const got = v instanceof Tensor ? `a tensor of shape [${v.shape.join(', ')}]` : v === null ? 'null' : typeof v;
      if (!(v instanceof Tensor) || v.numel() !== 1) throw new Error(`progress.set: '${name}' must be a number or a one-element tensor, got ${got}`);
    }
    for (const [name, v] of entries) {
      this.values.set(name, v);
      if (typeof v !== 'number' && v.device !== 'cpu') this.startRead(name, v);
    }
    this.dirty = true;
  }

  /** Counts `steps` more steps done (the iterators do this for you). */
  update(steps = 1): void {
    this.n += steps;
    this.dirty = true;
    this.draw(false);
  }

  /** Prints a message above the line (through `options.print`) without garbling it. */
  write(text: string): void {
    if (this.options.disable) return;
    if (this.stream.isTTY && !this.closed) this.stream.write('\r\x1b[K');
    (this.options.print ?? console.log)(text);
    if (this.stream.isTTY && !this.closed) this.draw(true);
  }

  /** Draws the final line (the iterators call it when the loop ends, also by `break` or an error). */
  close(): void {
    if (this.closed) return;
    if (this.dirty || this.now() !== this.lastDraw) this.draw(true);
    this.closed = true;
    if (this.stream.isTTY && !this.options.disable) this.stream.write('\n');
  }

  /** The line as it would be drawn now (e.g. for a page that shows it itself). */
  toString(): string {
    const elapsed = this.now() - this.start;
    const rate = elapsed > 0 && this.n > 0 ? (this.n * 1000) / elapsed : null;
    const speed = rate === null ? '? it/s' : rate >= 1 ? `${rate.toFixed(2)} it/s` : `${(1 / rate).toFixed(2)} s/it`;
    const eta = this.total !== null ? `<${rate === null ? '?' : clock(((this.total - this.n) / rate) * 1000)}` : '';
    const shown = [...this.values].map(([name, v]) => {
      const x = this.valueOf(name, v);
      return `${name}=${x === null ? '?' : num(x)}`;
    });
    const stats = `[${[clock(elapsed) + eta, speed, ...shown].join(', ')}]`;
    const desc = this.options.desc ? `${this.options.desc}: ` : '';
    if (this.total === null) return `${desc}${this.n} ${stats}`;
    const frac = this.total > 0 ? Math.min(1, this.n / this.total) : 1;
    const pct = `${String(Math.floor(frac * 100)).padStart(3)}%`;
    const counts = `${this.n}/${this.total}`;
    if (!this.stream.isTTY) return `${desc}${pct} ${counts} ${stats}`;
    const cols = this.stream.columns ?? 80;
    const rest = `${desc}${pct}|| ${counts} ${stats}`.length;
    const width = Math.max(0, Math.min(30, cols - 1 - rest));
    const eighths = Math.round(frac * width * 8);
    const bar = '█'.repeat(Math.floor(eighths / 8)) + (eighths % 8 ? BLOCKS[eighths % 8] : '');
    return `${desc}${pct}|${bar.padEnd(width)}| ${counts} ${stats}`.slice(0, cols - 1);
  }

  private valueOf(name: string, v: ProgressValue): number | null {
    if (typeof v === 'number') return v;
    if (v.device === 'cpu') return v.itemSync();
    this.startRead(name, v);
    return this.readValues.get(name) ?? null;
  }

  /** Reads a device tensor in the background (one read per name at a time); draws show the last value that arrived. */
  private startRead(name: string, v: Tensor): void {
    if (this.reading.has(name)) return;
    this.reading.add(name);
    v.item().then(
      (x) => { this.readValues.set(name, x); this.reading.delete(name); },
      () => { this.reading.delete(name); },
    );
  }

  private draw(force: boolean): void {
    if (this.options.disable || this.closed) return;
    const t = this.now();
    const tty = this.stream.isTTY === true;
    if (!force && t - this.lastDraw < (tty ? REDRAW_MS : (this.options.interval ?? 10) * 1000)) return;
    this.lastDraw = t;
    this.dirty = false;
    const line = this.toString();
    if (tty) {
      this.stream.write('\r' + line + (line.length < this.lastWidth ? '\x1b[K' : ''));
      this.lastWidth = line.length;
    } else {
      this.stream.write(line + '\n');
    }
  }
}
