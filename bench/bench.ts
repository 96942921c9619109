// kiln benchmarks against its peers, on this machine.
//
//   npm run bench                     (from the repository root: installs the peers, runs all)
//   npm run bench -- dose mlp cpu webgpu  (any subset; `models` = cnn chargpt makemore)
//
// Prints one table per benchmark and writes bench/results.json.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { formatTable, errorMessage, type Table } from './timing.ts';
import { loadKiln } from './peers/kiln.ts';

const ALL = ['dose', 'mlp', 'cpu', 'webgpu', 'cnn', 'chargpt', 'makemore'] as const;
type Name = (typeof ALL)[number];
/** Names that stand for several benchmarks. */
const GROUPS: Record<string, Name[]> = { models: ['cnn', 'chargpt', 'makemore'] };

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    /* not Linux */
  }
  return os.cpus()[0]?.model ?? 'unknown CPU';
}

interface CpuSnap { busy: number; total: number; ours: number }

/** System-wide busy/total jiffies and this process's own (children included) from /proc. */
function cpuSnap(): CpuSnap | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 8).map(Number);
    const idle = f[3]! + f[4]!;
    const total = f.reduce((a, b) => a + b, 0);
    // /proc/self/stat: fields after the ")" -- utime stime cutime cstime are 14..17 (1-based).
    const st = readFileSync('/proc/self/stat', 'utf8');
    const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
    const ours = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
    return { busy: total - idle, total, ours };
  } catch {
    return null;
  }
}

/** Cores' worth of CPU that other processes used between two snapshots (0 when unknown). */
function otherCores(a: CpuSnap | null, b: CpuSnap | null): number {
  if (!a || !b) return 0;
  const cores = os.cpus().length;
  const wall = (b.total - a.total) / cores;
  if (wall < 50) return 0; // under ~0.5 s: too short to say
  return Math.max(0, (b.busy - a.busy - (b.ours - a.ours)) / Math.max(wall, 1));
}

/** Other processes' CPU use over the next 0.5 s. */
function otherCpuLoad(): number {
  const a = cpuSnap();
  const t0 = Date.now();
  while (Date.now() - t0 < 500) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500 - (Date.now() - t0));
  return otherCores(a, cpuSnap());
}

async function main() {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('-')).flatMap((a) => GROUPS[a] ?? [a]);
  const bad = args.filter((a) => !(ALL as readonly string[]).includes(a));
  if (bad.length) {
    console.error(`unknown benchmark(s): ${bad.join(', ')}; choose from ${ALL.join(' ')} ${Object.keys(GROUPS).join(' ')}`);
    process.exit(2);
  }
  const which: Name[] = args.length ? [...new Set(args as Name[])] : [...ALL];

  const load = await loadKiln();
  let kilnCommit = 'unknown';
  try {
    const root = fileURLToPath(new URL('..', import.meta.url));
    kilnCommit = execFileSync('git', ['-C', root, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' }).trim().slice(0, 100);
  } catch {
    /* not a git checkout */
  }
  const machine = {
    cpu: cpuModel(),
    cores: os.cpus().length,
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    date: new Date().toISOString(),
    kilnCommit,
    kiln: load.kiln
      ? `loaded from ../index.ts (compile: ${load.hasCompile ? 'yes' : 'missing'}, webgpu: ${load.hasWebgpu ? 'yes' : 'missing'})`
      : load.error,
    adapter: 'not probed (no WebGPU benchmark selected)',
  };
  if (which.some((n) => n === 'webgpu' || n === 'cnn' || n === 'chargpt')) {
    const { webgpuEnv } = await import('./peers/webgpu-env.ts');
    const env = await webgpuEnv().catch((e: unknown) => `failed: ${errorMessage(e)}`);
    machine.adapter = typeof env === 'string' ? env : env.info;
  }
  console.log('# kiln benchmarks');
  console.log('');
  console.log(`machine : ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}`);
  console.log(`node    : ${machine.node}`);
  console.log(`adapter : ${machine.adapter}`);
  console.log(`kiln    : ${machine.kiln}`);
  console.log(`commit  : ${kilnCommit}`);
  console.log(`date    : ${machine.date}`);
  const load0 = otherCpuLoad();
  console.log(`load    : other processes use ~${load0.toFixed(1)} of ${machine.cores} cores right now${load0 > 0.3 ? ' (busy: timings will be pessimistic)' : ''}`);
  console.log('');

  const tables: Table[] = [];
  for (const name of which) {
    const t0 = performance.now();
    const snap0 = cpuSnap();
    let got: Table[];
    try {
      if (name === 'dose') got = [await (await import('./dose.ts')).runDose()];
      else if (name === 'mlp') got = [await (await import('./mlp.ts')).runMlp()];
      else if (name === 'cpu') got = await (await import('./cpu.ts')).runCpu();
      else if (name === 'cnn' || name === 'chargpt' || name === 'makemore') got = await (await import('./models.ts')).runModels(name);
      else got = await (await import('./webgpu.ts')).runWebgpu();
    } catch (e) {
      got = [{ id: name, title: name, unit: 'ms', rows: [], notes: [`benchmark crashed: ${errorMessage(e)}`], baseline: '' }];
    }
    const others = otherCores(snap0, cpuSnap());
    for (const table of got) {
      table.otherCores = +others.toFixed(2);
      table.date = new Date().toISOString();
      table.kilnCommit = kilnCommit;
      if (others > 0.15 && table.rows.length)
        table.notes.push(`machine busy: other processes used ~${others.toFixed(2)} of ${os.cpus().length} cores on average during this benchmark; numbers are pessimistic, rerun on a quiet machine`);
      tables.push(table);
      console.log(formatTable(table));
      console.log('');
    }
    console.log(`(${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    console.log('');
  }

  const out = fileURLToPath(new URL('./results.json', import.meta.url));
  let previous: { tables?: Table[] } = {};
  try {
    previous = JSON.parse(readFileSync(out, 'utf8')) as typeof previous;
  } catch {
    /* first run */
  }
  // A partial run (e.g. `tsx bench.ts dose`) keeps the other tables from the last run.
  const group = (t: Table) => t.id.split('-')[0] as Name;
  const merged = [...(previous.tables ?? []).filter((t) => !which.includes(group(t))), ...tables];
  merged.sort((a, b) => ALL.indexOf(group(a)) - ALL.indexOf(group(b)));
  writeFileSync(out, JSON.stringify({ machine, tables: merged }, null, 2) + '\n');
  console.log(`results written to ${out}`);
  // Dawn / worker handles can keep the event loop alive.
  process.exit(0);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
