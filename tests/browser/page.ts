// The browser tests' page code, bundled as /tests/page.js against /kiln.js (the page's import map
// maps acorn): it hands kiln and the fixtures to page.evaluate through window.kilnTests.
import * as kiln from '../../index.ts';
import { trainSmall } from './small-mlp.ts';
import { traceError } from './trace-error.ts';

/**
 * How far WebGPU's values are from the CPU's, relative to the largest CPU value: rounding where a driver
 * fuses multiply-adds is ~1e-7, a lost or repeated reduction step ~1e-1.
 */
const worstRelative = (cpu: ArrayLike<number>, gpu: ArrayLike<number>): number => {
  let diff = 0, scale = 0;
  for (let i = 0; i < cpu.length; i++) {
    diff = Math.max(diff, Math.abs(cpu[i] - gpu[i]));
    scale = Math.max(scale, Math.abs(cpu[i]));
  }
  return diff / scale;
};

const kilnTests = { kiln, trainSmall, traceError, worstRelative };
export type KilnTests = typeof kilnTests;
(window as unknown as { kilnTests: KilnTests }).kilnTests = kilnTests;
