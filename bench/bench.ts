// kiln benchmarks against its peers, on this machine.
//
//   npm run bench                     (from the repository root: installs the peers, runs all)
//   cd bench && npx tsx bench.ts dose mlp webgpu   (any subset)
//
// Prints one table per benchmark and writes bench/results.json.
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { formatTable, errorMessage, type Table } from './timing.ts';
import { loadKiln } from './peers/kiln.ts';

const ALL = ['dose', 'mlp', 'webgpu'] as const;
type Name = (typeof ALL)[number];

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    /* not Linux */
  }
  return os.cpus()[0]?.model ?? 'unknown CPU';
}

async function main() {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const bad = args.filter((a) => !(ALL as readonly string[]).includes(a));
  if (bad.length) {
    console.error(`unknown benchmark(s): ${bad.join(', ')}; choose from ${ALL.join(' ')}`);
    process.exit(2);
  }
  const which: Name[] = args.length ? (args as Name[]) : [...ALL];

  const load = await loadKiln();
  const machine = {
    cpu: cpuModel(),
    cores: os.cpus().length,
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    date: new Date().toISOString(),
    kiln: load.kiln
      ? `loaded from ../index.ts (compile: ${load.hasCompile ? 'yes' : 'missing'}, webgpu: ${load.hasWebgpu ? 'yes' : 'missing'})`
      : load.error,
    adapter: 'not probed (webgpu benchmark not selected)',
  };
  if (which.includes('webgpu')) {
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
  console.log(`date    : ${machine.date}`);
  console.log('');

  const tables: Table[] = [];
  for (const name of which) {
    const t0 = performance.now();
    let got: Table[];
    try {
      if (name === 'dose') got = [await (await import('./dose.ts')).runDose()];
      else if (name === 'mlp') got = [await (await import('./mlp.ts')).runMlp()];
      else got = await (await import('./webgpu.ts')).runWebgpu();
    } catch (e) {
      got = [{ id: name, title: name, unit: 'ms', rows: [], notes: [`benchmark crashed: ${errorMessage(e)}`], baseline: '' }];
    }
    for (const table of got) {
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
