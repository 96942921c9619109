// The `doubleBackward` golden cases of nn.json: second derivatives of z = x*x*y
// through `backward({ createGraph })` (gradients accumulate) and through
// `autograd.grad` (which leaves `.grad` alone). The `op` cases of nn.json run in
// golden-ops.test.ts.
import { describe, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { expectTensor, loadGolden, toTensor, values, type DoubleBackwardCase } from './golden.ts';

const cases = loadGolden('nn').cases.filter((c): c is DoubleBackwardCase => c.kind === 'doubleBackward');

describeEachDevice('golden nn: double backward', (device) => {
  it('nn.json has doubleBackward cases', () => {
    if (cases.length === 0) throw new Error('no doubleBackward cases found in nn.json');
  });

  for (const c of cases) {
    const scalar = c.inputs.x.shape.length === 0;
    const makeZ = (x: kiln.Tensor, y: kiln.Tensor) => {
      const z = x.mul(x).mul(y);
      return scalar ? z : z.sum();
    };

    describe(c.name, () => {
      it('backward with createGraph, then backward through x.grad (accumulates)', async () => {
        const label = `${c.name} [${device}]`;
        const x = toTensor(c.inputs.x, device, true);
        const y = toTensor(c.inputs.y, device, true);
        const z = makeZ(x, y);
        await expectTensor(z, c.z, c.tol, `${label}: z`);

        z.backward(undefined, { createGraph: true });
        await expectTensor(x.grad, c.afterFirstBackward.x, c.tol, `${label}: x.grad after z.backward(createGraph)`);
        await expectTensor(y.grad, c.afterFirstBackward.y, c.tol, `${label}: y.grad after z.backward(createGraph)`);
        if (!x.grad!.requiresGrad) throw new Error(`${label}: x.grad should require grad after backward with createGraph`);

        if (scalar) x.grad!.backward();
        else x.grad!.sum().backward();
        await expectTensor(x.grad, c.afterSecondBackward.x, c.tol, `${label}: x.grad after second backward`);
        await expectTensor(y.grad, c.afterSecondBackward.y, c.tol, `${label}: y.grad after second backward`);
      });

      if (scalar) {
        it("API.md's spelling z.backward({ createGraph: true }) works too", async () => {
          const label = `${c.name} [${device}] (options as first argument)`;
          const x = toTensor(c.inputs.x, device, true);
          const y = toTensor(c.inputs.y, device, true);
          const z = makeZ(x, y);
          z.backward({ createGraph: true } as any);
          await expectTensor(x.grad, c.afterFirstBackward.x, c.tol, `${label}: x.grad`);
          await expectTensor(y.grad, c.afterFirstBackward.y, c.tol, `${label}: y.grad`);
          x.grad!.backward();
          await expectTensor(x.grad, c.afterSecondBackward.x, c.tol, `${label}: x.grad after second backward`);
          await expectTensor(y.grad, c.afterSecondBackward.y, c.tol, `${label}: y.grad after second backward`);
        });
      }

      it('autograd.grad with createGraph gives gx, then gxx and gxy, leaving .grad untouched', async () => {
        const label = `${c.name} [${device}] autograd.grad`;
        const x = toTensor(c.inputs.x, device, true);
        const y = toTensor(c.inputs.y, device, true);
        const z = makeZ(x, y);
        const gx = kiln.autograd.grad([z], [x], { createGraph: true })[0]!;
        await expectTensor(gx, c.autogradGrad.gx, c.tol, `${label}: gx = dz/dx`);
        if (!gx.requiresGrad) throw new Error(`${label}: gx should require grad (createGraph: true)`);
        const [gxx, gxy] = kiln.autograd.grad([gx.sum()], [x, y]);
        await expectTensor(gxx, c.autogradGrad.gxx, c.tol, `${label}: gxx = d(sum gx)/dx`);
        await expectTensor(gxy, c.autogradGrad.gxy, c.tol, `${label}: gxy = d(sum gx)/dy`);
        if (x.grad !== null) throw new Error(`${label}: x.grad should stay null, got [${await values(x.grad)}]`);
        if (y.grad !== null) throw new Error(`${label}: y.grad should stay null, got [${await values(y.grad)}]`);
      });
    });
  }
});
