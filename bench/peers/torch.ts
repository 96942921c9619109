// PyTorch eager peer: runs peers/torch_bench.py with the system Python
// (Debian's python3-torch) in a subprocess; the script times its own loop.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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

export async function torchBench(which: 'dose' | 'mlp' | 'matmul', budgetS = 3): Promise<TorchResult> {
  const { stdout } = await run(PY, [SCRIPT, which, String(budgetS)], { timeout: 120_000 });
  return lastJson(stdout);
}

/** A named array handed to the PyTorch side (weights, inputs), in PyTorch's layout. */
export interface NamedArray {
  name: string;
  data: Float32Array | Int32Array;
  shape: number[];
}

/** A model benchmark of torch_bench.py, started from exactly these arrays (weights and data). */
export async function torchModelBench(which: 'cnn' | 'chargpt' | 'makemore', arrays: NamedArray[], budgetS = 3): Promise<TorchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-'));
  try {
    const spec = arrays.map((a) => {
      if (a.data.length !== a.shape.reduce((n, d) => n * d, 1)) throw new Error(`torchModelBench: array '${a.name}' holds ${a.data.length} values, its shape [${a.shape}] needs ${a.shape.reduce((n, d) => n * d, 1)}`);
      return [a.name, a.data instanceof Int32Array ? 'int32' : 'float32', a.shape];
    });
    const specPath = path.join(dir, 'arrays.json'), binPath = path.join(dir, 'arrays.bin');
    writeFileSync(specPath, JSON.stringify(spec));
    // Both array kinds are 4-byte little-endian on every platform Node runs these benchmarks on.
    writeFileSync(binPath, Buffer.concat(arrays.map((a) => Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength))));
    const { stdout } = await run(PY, [SCRIPT, which, String(budgetS), specPath, binPath], { timeout: 300_000, maxBuffer: 1 << 20 });
    return lastJson(stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function lastJson(stdout: string): TorchResult {
  const last = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as TorchResult;
}
