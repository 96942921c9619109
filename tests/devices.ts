// Which devices the parameterised test suites run on.
//
// Usage in a test file:
//
//   import { describeEachDevice } from './devices.ts';
//
//   describeEachDevice('golden ops', (device) => {
//     it('adds', async () => {
//       const x = kiln.tensor([1, 2], { device });
//       expect(Array.from(await x.add(1).data())).toEqual([2, 3]);
//     });
//   });
//
// registers `describe('golden ops [cpu]', ...)` and, where a WebGPU adapter
// exists, `describe('golden ops [webgpu]', ...)`. This module resolves the
// device list with a top-level await when it is first imported, so
// describeEachDevice() registers its blocks synchronously, at collection time,
// as vitest needs. The WebGPU device is already acquired when the tests run,
// so `getDeviceSync()` works inside them.
//
// Or, for a hand-written loop: `for (const d of await testDevices()) describe(...)`
// (top-level await in a test file is fine under vitest).
//
// Environment:
//   KILN_REQUIRE_WEBGPU=1  WebGPU must be available (CI sets it). Without an
//                          adapter, testDevices() throws and describeEachDevice()
//                          registers a failing '[webgpu]' test with the reason:
//                          the run FAILS, it never silently skips.
//   KILN_TEST_DEVICES=cpu  restrict the run to these devices (comma-separated:
//                          cpu, webgpu), e.g. for a quick local run. WebGPU is
//                          still included when KILN_REQUIRE_WEBGPU=1.

import { describe, it } from 'vitest';
import { available, getDevice } from '../runtime/webgpu/device.ts';
// The backend registers the 'webgpu' device when its module loads; the package loads it lazily, on
// kiln.webgpu.init() or available() (runtime/webgpu/lazy.ts), and these suites acquire the device directly.
import '../runtime/webgpu/backend.ts';

export type TestDevice = 'cpu' | 'webgpu';

export const requireWebGPU = process.env.KILN_REQUIRE_WEBGPU === '1';

function wanted(): Set<TestDevice> {
  const raw = process.env.KILN_TEST_DEVICES;
  const set = new Set<TestDevice>(
    raw ? (raw.split(',').map((s) => s.trim()).filter((s) => s === 'cpu' || s === 'webgpu') as TestDevice[]) : ['cpu', 'webgpu'],
  );
  if (requireWebGPU) set.add('webgpu');
  return set;
}

/** Why WebGPU is unavailable (the error getDevice() threw), or null when it is available. */
async function webgpuProblem(): Promise<Error | null> {
  if (await available()) return null;
  try {
    await getDevice();
    return null;
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

const want = wanted();
const problem: Error | null = want.has('webgpu') ? await webgpuProblem() : null;

function requiredError(): Error {
  return new Error(
    `KILN_REQUIRE_WEBGPU=1 but no WebGPU adapter is available, so the WebGPU tests cannot run: ${problem?.message}`,
    { cause: problem },
  );
}

/**
 * The devices to test on: 'cpu' plus 'webgpu' when an adapter exists.
 * Throws when KILN_REQUIRE_WEBGPU=1 and there is none.
 */
export async function testDevices(): Promise<TestDevice[]> {
  if (requireWebGPU && problem) throw requiredError();
  const out: TestDevice[] = [];
  if (want.has('cpu')) out.push('cpu');
  if (want.has('webgpu') && !problem) out.push('webgpu');
  return out;
}

/** Same as testDevices(), as a promise. */
export const devices: Promise<TestDevice[]> = testDevices();
devices.catch(() => {}); // reported where awaited; no unhandled rejection on import

/** `describe(name + ' [device]', () => fn(device))` for each test device (see the comment at the top). */
export function describeEachDevice(name: string, fn: (device: TestDevice) => void): void {
  if (want.has('cpu')) describe(`${name} [cpu]`, () => fn('cpu'));
  if (!want.has('webgpu')) return;
  if (!problem) {
    describe(`${name} [webgpu]`, () => fn('webgpu'));
  } else if (requireWebGPU) {
    const err = requiredError();
    describe(`${name} [webgpu]`, () => {
      it('WebGPU is required (KILN_REQUIRE_WEBGPU=1) but unavailable', () => {
        throw err;
      });
    });
  }
  // Otherwise WebGPU is simply absent on this machine: the cpu blocks run alone.
}
