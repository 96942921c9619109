// How threads.ts gets its workers (./thread-workers.ts) in a browser build (package.json's
// "#thread-workers", browser condition): an import() on the pool's first use, so a page does not load
// them before its first line runs; split jobs run on one thread until they are up, as they would while
// the Web Workers start anyway. (thread-workers-load.ts is Node's.)

import type { Workers } from './thread-workers-load.ts';

export const loadWorkers = (): Workers | Promise<Workers> => import('./thread-workers.ts');
