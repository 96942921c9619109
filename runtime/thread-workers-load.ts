// How threads.ts gets its workers (./thread-workers.ts) where package.json's "#thread-workers" has
// no browser condition -- Node, and whatever runs kiln's sources: at once, by a static import, so that
// the first split job of a program already runs on every thread. (thread-workers-load.browser.ts is
// what a browser build gets instead.)

import * as workers from './thread-workers.ts';

export type Workers = typeof workers;

export const loadWorkers = (): Workers | Promise<Workers> => workers;
