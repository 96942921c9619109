// Tensor internals that stay in runtime/: the one name registry (runtime/host.ts: labels the
// library gives, apart from automatic ones) and moving a tensor's storage in place (Module.to,
// optimizer state), which nn/ and optim/ call instead of writing Tensor fields themselves.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';

type Tensor = kiln.Tensor;

describe('tensor names (runtime/host.ts)', () => {
  it('an automatic label is not a given one; setLabel names a tensor for listings', () => {
    const t = kiln.zeros([2, 3]);
    expect(kiln.labelOf(t)).toMatch(/^t\d+\[2, 3\]$/);
    expect(kiln.givenLabel(t)).toBeUndefined();
    kiln.setLabel(t, 'layer.weight');
    expect(kiln.labelOf(t)).toBe('layer.weight');
    expect(kiln.givenLabel(t)).toBe('layer.weight');
  });

  it('modules name their parameters in the registry (the longest dotted name wins); optimizer state follows', () => {
    const inner = new kiln.nn.Linear(2, 2);
    const outer = new kiln.nn.Sequential(inner);
    outer.namedParameters();
    expect(kiln.givenLabel(inner.weight)).toBe('0.weight');
    inner.namedParameters(); // a shorter name from the inner module does not replace it
    expect(kiln.givenLabel(inner.weight)).toBe('0.weight');
  });

  it('optimizer state is named after its parameter, read from the same registry', async () => {
    const model = new kiln.nn.Sequential(new kiln.nn.Linear(2, 2));
    model.namedParameters();
    const opt = new kiln.optim.Adam(model.parameters());
    const step = kiln.compile((x: Tensor) => {
      opt.zeroGrad();
      model.forward(x).sum().backward();
      opt.step();
    });
    const l = await step.lower(kiln.ones([1, 2]));
    expect(l.forward.toString()).toContain('capture 0.weight.expAvg');
    expect(l.forward.toString()).toContain('capture 0.bias.expAvgSq');
  });
});

describeEachDevice('Tensor._moveTo', (device) => {
  it('keeps the object and its data; a move to its own device changes nothing', async () => {
    const t = kiln.tensor([1, 2, 3], { device });
    const version = t._version;
    t._moveTo(device, 'test');
    expect(t.device).toBe(device);
    expect(t._version).toBe(version);
    expect(Array.from(await t.data())).toEqual([1, 2, 3]);
  });

  it('refuses a symbolic (traced) tensor, naming the caller', async () => {
    const other = device === 'cpu' ? 'webgpu' : 'cpu';
    const step = kiln.compile((x: Tensor) => { x._moveTo(other, 'Module.to'); return x; });
    await expect(step(kiln.ones([2], { device }))).rejects.toThrow(`Module.to: cannot move a symbolic (traced) tensor to '${other}'`);
  });
});
