// dawn.node's poll loop handed to a timer after SPIN_MS (runtime/webgpu/dawn-poll.ts), on a fake clock.

import { describe, expect, it } from 'vitest';
import { promisify } from 'node:util';
import { SPIN_MS, throttledImmediate, throttleDawnPolling } from '../runtime/webgpu/dawn-poll.ts';

/** A fake event loop: queued callbacks with how they were queued, run one by one on a clock we move. */
function fakeLoop() {
  let clock = 0;
  const queued: { how: 'immediate' | 'timer'; ms: number; run: () => void }[] = [];
  const setImm = throttledImmediate(
    (cb, ...args) => queued.push({ how: 'immediate', ms: 0, run: () => cb(...args) }),
    (run, ms) => queued.push({ how: 'timer', ms, run }),
    () => clock,
  );
  return {
    setImm,
    queued,
    advance: (ms: number) => { clock += ms; },
    /** runs the oldest queued callback and says how it had been queued */
    step: () => { const q = queued.shift()!; q.run(); return q.how === 'timer' ? `timer ${q.ms}` : 'immediate'; },
  };
}

describe('dawn.node polling', () => {
  it('a native poll that queues itself is an immediate for SPIN_MS, then a 1 ms timer; a new wait spins again', () => {
    const loop = fakeLoop();
    let polls = 0;
    let pending = true;
    // Dawn's poll: a native function (bound functions are native too) that queues itself while work is pending
    const poll = function (this: null) { polls++; if (pending) loop.setImm(poll); }.bind(null);
    loop.setImm(poll);
    const how: string[] = [];
    for (let i = 0; i < 6; i++) { how.push(loop.step()); loop.advance(SPIN_MS / 2); }
    expect(polls).toBe(6);
    // queued at 0 (the wait begins), then from inside the polls at 0, SPIN_MS/2, SPIN_MS (the chain's age
    // reaches SPIN_MS: a timer from here on), ...
    expect(how).toEqual(['immediate', 'immediate', 'immediate', 'timer 1', 'timer 1', 'timer 1']);
    pending = false;
    loop.step(); // the last poll finds no work and stops queueing
    expect(loop.queued).toHaveLength(0);
    // the next wait: queued from outside a poll, so it spins again first
    pending = true;
    loop.setImm(poll);
    expect(loop.step()).toBe('immediate');
  });

  it('JavaScript callbacks always go to setImmediate, with their arguments', () => {
    const loop = fakeLoop();
    const got: unknown[] = [];
    const js = (x: unknown) => { got.push(x); loop.setImm(js, 'again'); };
    loop.setImm(js, 'first');
    for (let i = 0; i < 4; i++) { loop.advance(SPIN_MS); expect(loop.step()).toBe('immediate'); }
    expect(got).toEqual(['first', 'again', 'again', 'again']);
  });

  it('installed as the global setImmediate, Node callers keep working (arguments, util.promisify)', async () => {
    throttleDawnPolling();
    throttleDawnPolling(); // once only
    expect(await new Promise((resolve) => setImmediate(resolve, 7))).toBe(7);
    expect(await promisify(setImmediate)(5)).toBe(5);
  });
});
