// How Dawn's Node binding waits for the GPU, made cheap on a software adapter.
//
// While any promise of the `webgpu` package is pending (onSubmittedWorkDone, mapAsync), dawn.node
// polls for finished work by calling `setImmediate` with a native callback that processes Dawn's
// events and queues itself again: a busy loop on the JavaScript thread for as long as the GPU works.
// On a software adapter (lavapipe) that loop takes a core from the driver's own threads: on 2 cores
// the MLP training step took 33 ms with it and 19-21 ms without it (2026-11-30).
//
// So, in Node, kiln looks the global `setImmediate` up where dawn.node does and hands a poll chain
// that has run for SPIN_MS to a 1 ms timer: a short wait (an eager read, ~0.1-0.5 ms) is still
// answered at once, and a long one costs at most a millisecond more. Only native callbacks that
// queue themselves from inside their own run are slowed (Dawn's; a bound function too, which is
// native as well); every JavaScript callback goes straight to Node's setImmediate.

/** Continuous polling allowed before a chain of native polls moves to a timer (ms). */
export const SPIN_MS = 2;

type Immediate = (callback: (...args: unknown[]) => void, ...args: unknown[]) => unknown;

const isNative = (f: unknown): boolean => typeof f === 'function' && Function.prototype.toString.call(f).includes('[native code]');

/**
 * `setImmediate` for dawn.node: native callbacks queued from inside a native callback this wrapper
 * ran (a poll chain) go to `timer(run, 1)` once the chain is SPIN_MS old; everything else to
 * `immediate`. `now` is the clock (ms).
 */
export function throttledImmediate(immediate: Immediate, timer: (run: () => void, ms: number) => unknown, now: () => number): Immediate {
  let inPoll = false;
  let chainStart = 0;
  return (callback, ...args) => {
    if (!isNative(callback)) return immediate(callback, ...args);
    const t = now();
    if (!inPoll) chainStart = t; // not queued from a poll: a new wait begins
    const run = (): void => {
      inPoll = true;
      try {
        callback(...args);
      } finally {
        inPoll = false;
      }
    };
    return t - chainStart < SPIN_MS ? immediate(run) : timer(run, 1);
  };
}

let installed = false;

/** Installs throttledImmediate as the global setImmediate (Node, once; dawn.node looks it up per poll). */
export function throttleDawnPolling(): void {
  const g = globalThis as { setImmediate?: Immediate };
  if (installed || typeof g.setImmediate !== 'function') return;
  installed = true;
  const node = g.setImmediate;
  const wrapped = throttledImmediate(node.bind(globalThis), (run, ms) => setTimeout(run, ms), () => performance.now());
  // keep what hangs on Node's function (util.promisify's custom form)
  for (const key of Object.getOwnPropertySymbols(node)) Object.defineProperty(wrapped, key, Object.getOwnPropertyDescriptor(node, key)!);
  g.setImmediate = wrapped;
}
