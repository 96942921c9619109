// PyTorch eager peer: runs peers/torch_bench.py with the system Python
// (Debian's python3-torch) in a subprocess; the script times its own loop.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Measurement } from '../timing.ts';

const run = promisify(execFile);
const PY = process.env.KILN_BENCH_PYTHON ?? '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('./torch_bench.py', import.meta.url));

let avail: Promise<string | null> | null = null;

/** null when `import torch` works, else the reason PyTorch rows are skipped. */
export function torchMissing(): Promise<string | null> {
  avail ??= run(PY, ['-c', 'import torch'], { timeout: 60_000 }).then(
    () => null,
    () => `not available (${PY} -c 'import torch' failed; on Debian: apt-get install python3-torch)`,
  );
  return avail;
}

export interface TorchResult extends Measurement {
  torch: string;
  threads: number;
  blas: string;
}

export async function torchBench(which: 'dose' | 'mlp' | 'matmul' | 'cnn', budgetS = 3): Promise<TorchResult> {
  const { stdout } = await run(PY, [SCRIPT, which, String(budgetS)], { timeout: 120_000 });
  const last = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as TorchResult;
}
