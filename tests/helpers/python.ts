// PyTorch on the side, for interop tests: /usr/bin/python3 with Debian's python3-torch (or
// $KILN_PYTHON). Without torch those suites skip with the reason printed, unless
// KILN_REQUIRE_TORCH=1 (CI sets it after installing python3-torch): then they fail.

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const PYTHON = process.env.KILN_PYTHON ?? '/usr/bin/python3';
/** The folder of examples/handoff/safetensors_io.py, for scripts that import it. */
export const HANDOFF_DIR = fileURLToPath(new URL('../../examples/handoff/', import.meta.url));

function probe(): string | null {
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) return `${PYTHON} cannot run (${r.error.message})`;
  if (r.status !== 0) return `${PYTHON} has no torch/numpy (${r.stderr.trim().split('\n').pop()}); apt-get install python3-torch`;
  return null;
}

/** Why the PyTorch interop tests cannot run here, or null when they can. */
export const torchMissing: string | null = probe();
if (torchMissing) {
  if (process.env.KILN_REQUIRE_TORCH === '1') throw new Error(`KILN_REQUIRE_TORCH=1 but ${torchMissing}`);
  console.warn(`PyTorch interop tests skipped: ${torchMissing}`);
}

/** Runs a Python script (with safetensors_io importable) in `cwd`; returns stdout, throws with stderr on failure. */
export function python(script: string, cwd: string, timeoutMs = 120_000): string {
  const r = spawnSync(PYTHON, ['-c', script], { cwd, encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, PYTHONPATH: HANDOFF_DIR, OMP_NUM_THREADS: '1' } });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`python failed (exit ${r.status}):\n${r.stderr}`);
  return r.stdout;
}
