// The hand-off round trip (examples/handoff): kiln trains the MNIST MLP, PyTorch continues with
// DistributedDataParallel on 2 processes, kiln takes it back. Right after each hand-off both
// sides compute the same loss on the same probe batch; the first step kiln takes after getting
// the model back equals PyTorch's next step (the SGD momentum buffers came back intact); and the
// loss keeps going down across all three phases. Skipped, with the reason printed, without PyTorch.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { handoff } from '../examples/handoff/handoff.ts';
import { torchMissing } from './helpers/python.ts';

const close = (a: number, b: number, what: string): void => {
  if (Math.abs(a - b) > 1e-5 * Math.abs(b)) throw new Error(`${what}: kiln ${a}, PyTorch ${b}`);
};

describe.skipIf(torchMissing !== null)('hand-off: kiln -> PyTorch DDP (2 processes) -> kiln', () => {
  it('equal losses at each hand-off, and the loss keeps going down across both', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-handoff-'));
    // Few small steps (momentum 0.9, so the optimizer state matters); the batch splits over 2 processes.
    const r = await handoff({ kilnSteps: 12, torchSteps: 12, resumeSteps: 6, batchSize: 32, probeSize: 256, dir, log: false }).finally(() => rmSync(dir, { recursive: true, force: true }));
    expect([r.torch.steps, r.torch.worldSize]).toEqual([12, 2]);
    close(r.kiln.trained, r.torch.loaded, 'probe loss right after kiln -> PyTorch');
    close(r.kiln.loaded, r.torch.trained, 'probe loss right after PyTorch -> kiln');
    close(r.kiln.firstResumed, r.torch.extra, 'probe loss after the first step from the same optimizer state');
    expect(r.kiln.trained).toBeLessThan(r.kiln.start);
    expect(r.torch.trained).toBeLessThan(r.torch.loaded);
    expect(r.kiln.resumed).toBeLessThan(r.kiln.loaded);
  });
});
