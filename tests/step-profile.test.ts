// Compiled steps' timing tools: `step.profile(...)` (one real call with every kernel timed: GPU
// timestamps where the adapter has 'timestamp-query', else per-kernel wall time) and the KILN_PROFILE=1
// first-call breakdown, on every device. A profiled call must have exactly the effects of a plain call.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { describeEachDevice, testDevices } from './devices.ts';
import { setProfileMethod } from '../runtime/webgpu/backend.ts';
// the suites acquire the device directly (tests/devices.ts), not through kiln.webgpu's lazy facade
import { hasFeature } from '../runtime/webgpu/device.ts';
import * as kiln from '../index.ts';

const { nn, optim, F } = kiln;

function setup(device: 'cpu' | 'webgpu') {
  kiln.manualSeed(3);
  const model = new nn.Sequential(new nn.Linear(6, 5), new nn.ReLU(), new nn.Linear(5, 3));
  model.to(device);
  const opt = new optim.SGD(model.parameters(), { lr: 0.1 });
  const x = kiln.tensor(Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)), { shape: [4, 6], device });
  const y = kiln.tensor(Int32Array.from([0, 2, 1, 2]), { shape: [4], dtype: 'int32', device });
  const step = kiln.compile((xb: kiln.Tensor, yb: kiln.Tensor) => {
    const loss = F.crossEntropy(model.forward(xb), yb);
    loss.backward();
    opt.step();
    opt.zeroGrad();
    return loss;
  });
  return { model, x, y, step };
}

const weights = async (m: kiln.nn.Module): Promise<number[]> => (await Promise.all(m.parameters().map((p) => p.data()))).flatMap((d) => Array.from(d));

describeEachDevice('step.profile and KILN_PROFILE', (device) => {
  afterEach(() => {
    delete process.env.KILN_PROFILE;
    setProfileMethod(null);
  });

  it('profile() is one real call: same loss and weights as a plain call, every kernel timed with its share and source line', async () => {
    const a = setup(device), b = setup(device);
    const plain = await (await a.step(a.x, a.y)).item();
    const p = await b.step.profile(b.x, b.y);
    expect(await (p.result as kiln.Tensor).item()).toBeCloseTo(plain, 5);
    const wa = await weights(a.model), wb = await weights(b.model);
    for (let i = 0; i < wa.length; i++) expect(wb[i]).toBeCloseTo(wa[i], 5);
    const lowered = await b.step.lower(b.x, b.y);
    expect(p.kernels.map((k) => k.name)).toEqual(lowered.kernels.map((k) => k.name));
    expect(p.kernels.every((k) => k.ms >= 0 && k.share >= 0 && k.share <= 1)).toBe(true);
    expect(p.totalMs).toBeCloseTo(p.kernels.reduce((s, k) => s + k.ms, 0), 9);
    if (p.totalMs > 0) expect(p.kernels.reduce((s, k) => s + k.share, 0)).toBeCloseTo(1, 6);
    // the user's lines that made each kernel (this file)
    expect(p.kernels.some((k) => k.sources.some((s) => s.includes('step-profile.test.ts') && s.includes('crossEntropy')))).toBe(true);
    const text = String(p);
    expect(text).toMatch(new RegExp(`^kiln step profile: ${p.kernels.length} kernels, [0-9.]+ ms in total \\((timestamp-query|wall): `));
    expect(p.method).toBe(device === 'webgpu' && hasFeature('timestamp-query') ? 'timestamp-query' : 'wall');
    // a later plain call still works (and agrees with the unprofiled twin)
    const next = await (await b.step(b.x, b.y)).item();
    expect(next).toBeCloseTo(await (await a.step(a.x, a.y)).item(), 5);
  });

  it('KILN_PROFILE=1 prints the first call\'s breakdown once per signature', async () => {
    process.env.KILN_PROFILE = '1';
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const s = setup(device);
      await (await s.step(s.x, s.y)).item();
      await (await s.step(s.x, s.y)).item();
      const lines = warn.mock.calls.map((c) => String(c[0])).filter((l) => l.startsWith('kiln profile:'));
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatch(new RegExp(`^kiln profile: first call of ${device}\\|.* = trace [0-9.]+ ms \\+ graph passes [0-9.]+ ms`));
      if (device === 'webgpu') expect(lines[0]).toMatch(/pipelines [0-9.]+ ms \(\d+ shaders for \d+ kernels, [0-9.]+ KiB of WGSL, created together\) \+ encode [0-9.]+ ms \+ run [0-9.]+ ms/);
      else expect(lines[0]).toMatch(/\+ encode [0-9.]+ ms$/);
    } finally {
      warn.mockRestore();
    }
  });
});

// Adapters without 'timestamp-query' (forced here: lavapipe has it) time each kernel submitted alone.
if ((await testDevices()).includes('webgpu')) {
  describe('step.profile by wall time [webgpu]', () => {
    afterEach(() => setProfileMethod(null));
    it('says so, and times every kernel', async () => {
      setProfileMethod('wall');
      const s = setup('webgpu');
      const p = await s.step.profile(s.x, s.y);
      expect(p.method).toBe('wall');
      expect(p.note).toMatch(/submitted alone/);
      expect(p.kernels.every((k) => k.ms > 0)).toBe(true);
    });
  });
}
