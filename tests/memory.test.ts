// Memory held flat (issue 13): an eager training loop of 3,000 steps of a small MLP on the CPU ends
// within 10% of the resident memory it had after its first 300 steps; so does the compiled loop.
// (WebGPU figures are measured by hand with tests/memory/loop.ts; see notes/README-fuzz.md.)
import { describe, expect, it } from 'vitest';
import { trainingLoop } from './memory/loop.ts';

describe('memory over a long training loop [cpu]', () => {
  it('eager: RSS after 3,000 steps is within 10% of RSS after 300', async () => {
    const r = await trainingLoop({ device: 'cpu', steps: 3000, warm: 300 });
    expect(Number.isFinite(r.lossEnd)).toBe(true);
    expect(r.rssEnd).toBeLessThanOrEqual(r.rssWarm * 1.1);
  });

  it('compiled, never reading a value until the end: RSS after 3,000 steps is within 10% of RSS after 300', async () => {
    const r = await trainingLoop({ device: 'cpu', steps: 3000, warm: 300, compile: true, read: false });
    expect(Number.isFinite(r.lossEnd)).toBe(true);
    expect(r.rssEnd).toBeLessThanOrEqual(r.rssWarm * 1.1);
  });
});
