// The browser tests' page code, bundled as /tests/page.js against /kiln.js (the page's import map
// maps acorn): it hands kiln and the fixtures to page.evaluate through window.kilnTests.
import * as kiln from '../../index.ts';
import { trainSmall } from './small-mlp.ts';
import { traceError } from './trace-error.ts';

const kilnTests = { kiln, trainSmall, traceError };
export type KilnTests = typeof kilnTests;
(window as unknown as { kilnTests: KilnTests }).kilnTests = kilnTests;
