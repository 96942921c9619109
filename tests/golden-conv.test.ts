// Every case of ../shared/golden/conv.json (conv1d/conv2d with stride, padding incl. 'same', dilation,
// groups, depthwise, non-square kernels; max/avg/adaptive pooling; nn.Conv2d; a LeNet-like chain) on
// every device: eagerly, then compiled (fused and with fuse: false) as
// `(...inputs, gradOutput) => { out = <expr>; out.backward(gradOutput); return [out, ...grads] }`.
// Expressions that build a module (`new nn.Conv2d(...)`) run with the case's device as the default.
import { describe, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { evalExpr, expectTensor, loadGolden, toTensor, type Device, type OpCase } from './golden.ts';

type Tensor = kiln.Tensor;
const cases = loadGolden('conv').cases.filter((c): c is OpCase => c.kind === 'op');

function onDevice<T>(device: Device, f: () => T): T {
  const prev = kiln.getDefaultDevice();
  kiln.setDefaultDevice(device);
  try { return f(); } finally { kiln.setDefaultDevice(prev); }
}

async function check(label: string, c: OpCase, out: Tensor | undefined, grads: (Tensor | null | undefined)[]): Promise<void> {
  await expectTensor(out, c.output, c.tol, `${label}: output`);
  for (const [i, n] of Object.keys(c.grads).entries()) {
    const expected = c.grads[n];
    if (expected === null) {
      if (grads[i]) throw new Error(`${label}: ${n}.grad should be null (unused input)`);
      continue;
    }
    await expectTensor(grads[i], expected, c.tol, `${label}: ${n}.grad`);
  }
}

describeEachDevice('golden conv', (device) => {
  it('conv.json has 22 op cases', () => {
    if (cases.length !== 22) throw new Error(`expected 22 op cases in conv.json, found ${cases.length}`);
  });
  for (const mode of ['eager', 'compiled', 'compiled, fuse: false'] as const) {
    describe(mode, () => {
      for (const c of cases) {
        it(c.name, async () => {
          const label = `conv: ${c.name} [${device}, ${mode}] (${c.expr})`;
          const names = Object.keys(c.inputs);
          const gradNames = Object.keys(c.grads);
          const xs = names.map((n) => toTensor(c.inputs[n], device));
          const gradOut = c.gradOutput ? [toTensor(c.gradOutput, device)] : [];
          const body = (...args: Tensor[]): (Tensor | null)[] => {
            const ins = args.slice(0, names.length);
            const out = onDevice(device, () => evalExpr(c.expr, names, ins) as Tensor);
            if (gradNames.length === 0) return [out];
            out.backward(gradOut.length ? args[names.length] : undefined);
            return [out, ...gradNames.map((n) => ins[names.indexOf(n)].grad)];
          };
          if (mode === 'eager') {
            const [out, ...grads] = body(...xs, ...gradOut);
            await check(label, c, out!, grads);
            return;
          }
          const step = kiln.compile(body, { fuse: mode === 'compiled' });
          const [out, ...grads] = (await step(...xs, ...gradOut)) as unknown as (Tensor | null)[];
          await check(label, c, out!, grads);
          // the gradients are also written back to the real inputs
          await check(`${label} (written back)`, c, out!, gradNames.map((n) => xs[names.indexOf(n)].grad));
        });
      }
    });
  }
});
