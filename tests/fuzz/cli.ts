// `npm run fuzz -- --seconds N --device cpu|webgpu [--seed S] [--count N] [--no-shrink]`: runs the
// differential fuzzer for as long as asked and prints each new failure class (with its minimal
// program) as it appears, then a summary.

import { describeFailure, fuzz } from './fuzz.ts';
import type { Device } from './program.ts';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const device = (option('device') ?? 'cpu') as Device;
if (device !== 'cpu' && device !== 'webgpu') throw new Error(`fuzz: --device must be cpu or webgpu, got ${device}`);
const seconds = Number(option('seconds') ?? (option('count') ? Infinity : 60));
const count = option('count') === undefined ? undefined : Number(option('count'));
const firstSeed = Number(option('seed') ?? Date.now() % 1_000_000_000);
if (device === 'webgpu') {
  const kiln = await import('../../index.ts');
  if (!(await kiln.webgpu.available())) throw new Error('fuzz: no WebGPU adapter (see README: lavapipe set-up)');
  kiln.setDefaultDevice('webgpu');
}

// Ctrl-C (or SIGTERM) ends the run after the current program, with the summary.
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { interrupted = true; });

console.log(`fuzz: device ${device}, seeds from ${firstSeed}, ${Number.isFinite(seconds) ? `${seconds} s` : `${count} programs`}`);
const start = Date.now();
const stats = await fuzz({
  device, firstSeed, count, seconds: Number.isFinite(seconds) ? seconds : undefined,
  shrink: !process.argv.includes('--no-shrink'),
  onFailure: (f) => console.log(describeFailure(f) + '\n'),
  stop: () => interrupted,
});
const secs = ((Date.now() - start) / 1000).toFixed(1);
console.log(`fuzz: ${stats.programs} programs in ${secs} s on ${device} (seeds ${firstSeed}..${firstSeed + stats.programs - 1}): ` +
  `${stats.ok} agree, ${stats.mismatches} mismatches, ${stats.crashes} crashes, ${stats.invalid} rejected eagerly (not valid programs)`);
for (const [cls, n] of [...stats.classes].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(5)}  ${cls}`);
if (stats.invalid) {
  console.log('rejected eagerly, by reason:');
  for (const [r, n] of [...stats.invalidReasons].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(`  ${String(n).padStart(5)}  ${r}`);
}
process.exitCode = stats.mismatches + stats.crashes > 0 ? 1 : 0;
