// kiln.utils.progress: the progress line on a fake terminal and a fake pipe, with a clock the test drives.
import { describe, expect, it, vi } from 'vitest';
import * as kiln from '../index.ts';
import { defaultStream, type ProgressStream } from '../utils/progress.ts';
import { describeEachDevice } from './devices.ts';

const { progress } = kiln.utils;

function fakeStream(isTTY: boolean, columns?: number): ProgressStream & { out: string } {
  return { out: '', isTTY, columns, write(text: string) { this.out += text; } };
}

/** A clock that advances `stepMs` every time the loop body calls `tick()`. */
function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1000;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

/** What a terminal shows after the carriage returns and erase-to-end-of-line codes: the last line drawn. */
const screenLines = (out: string): string[] => out.split('\n').map((l) => l.split('\r').at(-1)!.replace(/\x1b\[K/g, ''));

describe('progress on a TTY', () => {
  it('redraws one line in place: step/total, bar, elapsed<eta, rate, loss; then ends the line', () => {
    const stream = fakeStream(true, 100);
    const clock = fakeClock();
    const bar = progress([10, 20, 30, 40], { desc: 'epoch 1', stream, now: clock.now });
    const seen: number[] = [];
    for (const v of bar) {
      seen.push(v);
      clock.advance(250); // 4 steps per second
      bar.set({ loss: 1 / v });
    }
    expect(seen).toEqual([10, 20, 30, 40]);
    expect(stream.out.startsWith('\repoch 1:   0%|')).toBe(true);
    expect(stream.out.endsWith('\n')).toBe(true);
    expect(stream.out.split('\n').length).toBe(2); // one line, redrawn with '\r'
    const draws = stream.out.split('\r').filter(Boolean).map((l) => l.replace(/\x1b\[K|\n/g, ''));
    expect(draws.length).toBe(5); // the start and every step (each 250 ms apart: more than the 100 ms throttle)
    expect(draws[2]).toBe(`epoch 1:  50%|${'█'.repeat(15)}${' '.repeat(15)}| 2/4 [00:00<00:00, 4.00 it/s, loss=0.05]`);
    expect(draws[4]).toBe(`epoch 1: 100%|${'█'.repeat(30)}| 4/4 [00:01<00:00, 4.00 it/s, loss=0.025]`);
    expect(draws.every((l) => l.length <= 99)).toBe(true); // never wraps at 100 columns
  });

  it('throttles redraws to one per 0.1 s, but always draws the last state', () => {
    const stream = fakeStream(true);
    const clock = fakeClock();
    const bar = progress(100, { stream, now: clock.now });
    for (const _ of bar) clock.advance(10); // 100 steps/s: a redraw every 10 steps
    const draws = stream.out.split('\r').filter(Boolean);
    expect(draws.length).toBe(1 + 10); // the start, then every 10th step (the last one included)
    expect(screenLines(stream.out)[0]).toMatch(/^100%\|█+\| 100\/100 \[00:01<00:00, 100\.00 it\/s\]$/);
  });

  it('bar.write prints a message above the line and redraws it', () => {
    const stream = fakeStream(true);
    const printed: string[] = [];
    const clock = fakeClock();
    const bar = progress(3, { stream, now: clock.now, print: (t) => printed.push(t) });
    for (const i of bar) {
      clock.advance(1000);
      bar.write(`step ${i}`);
    }
    expect(printed).toEqual(['step 0', 'step 1', 'step 2']);
    expect(stream.out.match(/\r\x1b\[K/g)!.length).toBe(3); // the line is erased before each message
    expect(screenLines(stream.out)[0]).toMatch(/3\/3 \[00:03<00:00, 1\.00 it\/s\]$/);
  });

  it('closes the line when the loop breaks or throws', () => {
    const stream = fakeStream(true);
    const clock = fakeClock();
    for (const i of progress(10, { stream, now: clock.now })) {
      clock.advance(500);
      if (i === 2) break;
    }
    // the third step broke off: two steps done in 1.5 s
    expect(screenLines(stream.out)[0]).toMatch(/^ 20%\|.*\| 2\/10 \[00:01<00:06, 1\.33 it\/s\]$/);
    expect(stream.out.endsWith('\n')).toBe(true);

    const s2 = fakeStream(true);
    expect(() => {
      for (const i of progress(10, { stream: s2, now: clock.now })) if (i === 1) throw new Error('boom');
    }).toThrow('boom');
    expect(s2.out.endsWith('\n')).toBe(true);
  });
});

describe('progress off a TTY (CI logs, pipes)', () => {
  it('prints a plain line every `interval` seconds and one at the end, without a bar or escape codes', () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const bar = progress(new Array(25).fill(0), { desc: 'train', stream, now: clock.now, interval: 5 });
    let i = 0;
    for (const _ of bar) {
      clock.advance(1000);
      bar.set({ loss: 2 - i++ * 0.05, lr: 0.1 });
    }
    expect(stream.out.split('\n')).toEqual([
      'train:  20% 5/25 [00:05<00:20, 1.00 it/s, loss=1.8, lr=0.1]',
      'train:  40% 10/25 [00:10<00:15, 1.00 it/s, loss=1.55, lr=0.1]',
      'train:  60% 15/25 [00:15<00:10, 1.00 it/s, loss=1.3, lr=0.1]',
      'train:  80% 20/25 [00:20<00:05, 1.00 it/s, loss=1.05, lr=0.1]',
      'train: 100% 25/25 [00:25<00:00, 1.00 it/s, loss=0.8, lr=0.1]',
      '',
    ]);
    expect(stream.out).not.toMatch(/[\r\x1b]/);
  });

  it('a short loop prints one line when it ends (a line per epoch)', () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    for (const _ of progress(3, { desc: 'epoch 2', stream, now: clock.now })) clock.advance(2000);
    expect(stream.out).toBe('epoch 2: 100% 3/3 [00:06<00:00, 2.00 s/it]\n');
  });

  it('starts its clock when the loop starts', () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const bar = progress(2, { stream, now: clock.now });
    clock.advance(60_000); // set-up between making the line and looping
    for (const _ of bar) clock.advance(1000);
    expect(stream.out).toBe('100% 2/2 [00:02<00:00, 1.00 it/s]\n');
  });

  it('goes to stderr in Node, and to console.log as plain lines where there is no process (a browser)', () => {
    expect(defaultStream()).toBe(process.stderr);
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      const clock = fakeClock();
      for (const _ of progress(2, { desc: 'page', stream: defaultStream({}), now: clock.now })) clock.advance(500);
      expect(log.mock.calls).toEqual([['page: 100% 2/2 [00:01<00:00, 2.00 it/s]']]);
    } finally {
      log.mockRestore();
    }
  });

  it('without a total: counts and rate only; disable prints nothing', () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    function* gen() { yield 1; yield 2; }
    for (const _ of progress(gen(), { stream, now: clock.now })) clock.advance(100);
    expect(stream.out).toBe('2 [00:00, 10.00 it/s]\n');
    const quiet = fakeStream(true);
    expect([...progress([1, 2, 3], { stream: quiet, disable: true })]).toEqual([1, 2, 3]);
    expect(quiet.out).toBe('');
  });
});

describe('progress with kiln data', () => {
  it('takes its total from a DataLoader, iterates it sync and async, and reads a loss tensor only when drawing', async () => {
    const ds = new kiln.data.TensorDataset(kiln.arange(0, 10).float(), kiln.arange(10, 20).float());
    const loader = new kiln.data.DataLoader(ds, { batchSize: 4 });
    const stream = fakeStream(false);
    const clock = fakeClock();
    const bar = progress(loader, { stream, now: clock.now });
    expect(bar.total).toBe(3);
    let batches = 0;
    for await (const [x, y] of bar) {
      batches++;
      clock.advance(100);
      bar.set({ loss: y.sub(x).mean() }); // 10 every time
    }
    expect(batches).toBe(3);
    expect(stream.out).toBe('100% 3/3 [00:00<00:00, 10.00 it/s, loss=10]\n');
    expect(bar.n).toBe(3);
  });

  it('bad input is a clear error', () => {
    expect(() => progress(-1)).toThrow(/progress: a count must be a non-negative integer, got -1/);
    expect(() => progress([1], { total: 1.5 })).toThrow(/progress: total must be a non-negative integer, got 1.5/);
    expect(() => progress([1], { interval: 0 })).toThrow(/progress: interval must be a positive number of seconds, got 0/);
    expect(() => progress(null as unknown as number[])).toThrow('progress: expected an iterable (a DataLoader, an array, a generator) or a count, got null');
    expect(() => progress({ length: 3 } as unknown as number[])).toThrow('progress: expected an iterable (a DataLoader, an array, a generator) or a count, got object');
    const bar = progress([1], { stream: fakeStream(false) });
    expect(() => bar.set({ loss: kiln.zeros([2]) })).toThrow(/progress.set: 'loss' must be a number or a one-element tensor, got a tensor of shape \[2\]/);
    expect(() => bar.set({ acc: 0.5, loss: '0.1' as unknown as number })).toThrow(/progress.set: 'loss' must be a number or a one-element tensor, got string/);
    expect(bar.toString()).not.toContain('acc='); // nothing was kept
    expect([...bar]).toEqual([1]);
    expect(() => [...bar]).toThrow('progress: a progress line goes through its source once; make a new one for each pass (epoch)');
  });
});

describeEachDevice('progress with a loss tensor', (device) => {
  it('shows its value (a device tensor once its read completed, without making the step wait)', async () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const bar = progress(2, { stream, now: clock.now, interval: 1 });
    const losses = [kiln.tensor(0.5, { device }), kiln.tensor(0.25, { device })];
    for (const i of bar) {
      bar.set({ loss: losses[i] });
      clock.advance(1000);
      if (i === 0 && device === 'webgpu') {
        bar.update(0); // a draw starts the read and shows '?' until the value arrives
        expect(stream.out).toContain('loss=?');
        await losses[0].data();
        await new Promise((r) => setTimeout(r, 0));
      }
    }
    const lines = stream.out.split('\n').filter(Boolean);
    // on WebGPU the last line shows the last value that arrived (0.25's read has only just started)
    expect(lines.at(-1)).toBe(`100% 2/2 [00:02<00:00, 1.00 it/s, loss=${device === 'webgpu' ? 0.5 : 0.25}]`);
    if (device === 'cpu') expect(lines[0]).toBe(' 50% 1/2 [00:01<00:01, 1.00 it/s, loss=0.5]');
  });
});
