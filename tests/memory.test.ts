// Memory held flat (issue 13): an eager training loop of 3,000 steps of a small MLP on the CPU ends
// within 10% of the resident memory it had after its first 300 steps; so does the compiled loop that
// never reads a value. Each loop runs in its own Node process with --expose-gc (tests/memory/loop.ts
// collects garbage before sampling), so the figure is live memory, not the collector's timing.
// (WebGPU figures are measured by hand with the same script; see README.md, "Reliability".)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { LoopResult } from './memory/loop.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

function loop(...flags: string[]): LoopResult {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', 'tests/memory/loop.ts', '--device', 'cpu', '--steps', '3000', '--json', ...flags], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`memory loop failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as LoopResult;
}

describe('memory over a long training loop [cpu]', () => {
  it('eager: RSS after 3,000 steps is within 10% of RSS after 300', () => {
    const r = loop();
    expect(Number.isFinite(r.lossEnd)).toBe(true);
    expect(r.rssEnd).toBeLessThanOrEqual(r.rssWarm * 1.1);
  });

  it('compiled, never reading a value until the end: RSS after 3,000 steps is within 10% of RSS after 300', () => {
    const r = loop('--compile', '--no-read');
    expect(Number.isFinite(r.lossEnd)).toBe(true);
    expect(r.rssEnd).toBeLessThanOrEqual(r.rssWarm * 1.1);
  });
});
