// kiln's 1024³ matmul in fresh processes against the reference WGSL kernels, in alternating rounds so
// that a shared machine's load swings hit every row alike (webgpu.ts runs each row once). Each round:
// a process with an empty tuning cache file, a second reading what the first wrote, one with
// KILN_AUTOTUNE=0 (the adapter's untuned default), then the 8×1 and 8×8 reference kernels in this
// process. Prints each round and the medians over rounds.
//
//   cd bench && ../node_modules/.bin/tsx matmul-rounds.ts [rounds=4] [n=1024]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { measure, rng, uniformArray } from './timing.ts';
import { webgpuEnv } from './peers/webgpu-env.ts';
import { referenceMatmul, type RefKernel } from './reference-matmul.ts';

const rounds = Number(process.argv[2] ?? 4);
const N = Number(process.argv[3] ?? 1024);
const MM_OPTS = { budgetMs: 1500, warmupMs: 0, minWarmup: 1, minSamples: 3, sampleMs: 0 };
const script = fileURLToPath(new URL('./kiln-matmul-process.ts', import.meta.url));
const env = await webgpuEnv();
if (typeof env === 'string') throw new Error(env);
const next = rng(42);
const a = uniformArray(N * N, -1, 1, next), b = uniformArray(N * N, -1, 1, next);
const kilnRows = { 'kiln fresh': 'no tuning cache', 'kiln warm': 'the fresh process\'s cache', 'kiln untuned': 'KILN_AUTOTUNE=0' } as const;
const refRows: Record<string, RefKernel> = { 'ref 8x1': 'register-blocked-8x1', 'ref 8x8': 'register-blocked' };
const times: Record<string, number[]> = Object.fromEntries([...Object.keys(kilnRows), ...Object.keys(refRows)].map((k) => [k, []]));
const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0];

/** kiln-matmul-process.ts in a child process; its median ms per product. */
function kilnProcess(cache: string, tune: boolean): number {
  const out = execFileSync(process.execPath, [...process.execArgv, script, String(N)], {
    env: { ...process.env, KILN_AUTOTUNE_CACHE: cache, ...(!tune && { KILN_AUTOTUNE: '0' }) },
    stdio: ['ignore', 'pipe', 'ignore'],
  }).toString().trim().split('\n').at(-1) ?? '';
  const r = JSON.parse(out) as { medianMs?: number; error?: string };
  if (typeof r.medianMs !== 'number') throw new Error(`kiln-matmul-process: ${r.error ?? out}`);
  return r.medianMs;
}

for (let round = 0; round < rounds; round++) {
  const cache = path.join(os.tmpdir(), `kiln-matmul-rounds-${process.pid}-${round}.json`);
  times['kiln fresh'].push(kilnProcess(cache, true));
  times['kiln warm'].push(kilnProcess(cache, true));
  times['kiln untuned'].push(kilnProcess(cache, false));
  let chosen = '(no choice persisted)';
  try { chosen = JSON.stringify(Object.values(JSON.parse(fs.readFileSync(cache, 'utf8')) as Record<string, Record<string, unknown>>).flatMap((s) => Object.values(s))); } catch { /* none written */ }
  try { fs.unlinkSync(cache); } catch { /* none written */ }
  for (const [name, kind] of Object.entries(refRows)) {
    const m = await referenceMatmul(env.device, kind, N, a, b);
    times[name].push((await measure(() => m.run(), MM_OPTS)).medianMs);
    m.destroy();
  }
  console.log(`round ${round} (load ${loadavg()}): ${Object.entries(times).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(0)}`).join(', ')} ms; cache ${chosen}`);
}
const median = (x: number[]) => [...x].sort((p, q) => p - q)[x.length >> 1];
const gflops = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, (2 * N ** 3) / median(v) / 1e6]));
const best = Math.max(...Object.keys(refRows).map((k) => gflops[k]));
console.log(`medians over ${rounds} rounds, ${N}³: ` + Object.entries(gflops).map(([k, g]) => `${k} ${g.toFixed(2)} GFLOP/s (${((100 * g) / best).toFixed(0)}%)`).join(', '));
console.log(`kiln rows: ${Object.entries(kilnRows).map(([k, v]) => `${k} = ${v}`).join('; ')}; % of the best reference`);
