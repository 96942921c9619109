// compile() as the package exports it: a lazy facade over ./compile.ts. The compiler proper -- the
// graph passes, fusion, memory planning, the executor, the listings, the code generators they reach
// -- is imported by the first compile() call, so a page that runs only eager code never downloads it
// and one that compiles fetches it while it sets up: in kiln's browser build it is a chunk of its own
// (README.md, "In the browser"). The tracer and source provenance come with it; kiln.TraceError, for
// `instanceof`, is the base class of the tracer's errors (./trace-error.ts), here from the start.
//
// Once the compiler is loaded, compile() returns ./compile.ts's compiled function itself. A function
// compiled before that is a stand-in whose calls wait for the compiler, then run in the order they
// were made, with the grad mode and default device they were made under (what a trace reads of the
// ambient state); its methods (lower, ...) are forwarded. `await step(x, y)` is all a caller needs.
// tests/bundle.test.ts checks that this module exports what ./compile.ts does.

import { enableGrad, isGradEnabled, noGrad } from '../runtime/autograd.ts';
import { getDefaultDevice, setDefaultDevice, type DeviceName } from '../runtime/device.ts';
import type { Tensor } from '../runtime/tensor.ts';
import type { CompiledFunction, CompileOptions } from './compile.ts';
// names the file kiln's first module lands in, for provenance (the compiler is in another file)
import './bundle-files.ts';

export { TraceErrorBase as TraceError } from './trace-error.ts';
export type { CompiledFunction, CompileOptions, KernelListing, Lowered } from './compile.ts';

type Compiler = typeof import('./compile.ts');
let loading: Promise<Compiler> | undefined;
/** the compiler, once loaded */
let compiler: Compiler | undefined;

function load(): Promise<Compiler> {
  loading ??= import('./compile.ts').then(
    (m) => (compiler = m),
    (e: unknown) => {
      loading = undefined; // a later call may try again
      throw new Error(`compile: cannot load kiln's compiler module: ${e instanceof Error ? e.message : String(e)}`);
    },
  );
  return loading;
}

/**
 * The methods a compiled function has besides being called, forwarded by the stand-in. The type
 * demands every one of CompiledFunction's methods, so adding one there is a type error until it is here.
 */
const forwarded: Record<Exclude<keyof CompiledFunction<Tensor[], unknown>, 'traces'>, true> = { lower: true, profile: true };

/** Runs `fn` under the grad mode and default device a call was made with. */
function asAt<T>(grad: boolean, device: DeviceName, fn: () => T): T {
  const before = getDefaultDevice();
  setDefaultDevice(device);
  try {
    return grad ? enableGrad(fn) : noGrad(fn);
  } finally {
    setDefaultDevice(before);
  }
}

/** See ./compile.ts: traces `fn` once per signature and runs generated kernels. */
export function compile<A extends Tensor[], R>(fn: (...args: A) => R, options: CompileOptions = {}): CompiledFunction<A, R> {
  if (compiler) return compiler.compile(fn, options);
  let real: CompiledFunction<A, R> | undefined;
  let waiting = 0; // calls made before the compiler arrived and not yet started: later calls queue behind them
  void load().catch(() => {}); // start fetching now; a failure is reported by the calls (each tries again)
  /** Runs `use` on the real compiled function: now if nothing is queued, else after what is. */
  const later = <T>(use: (f: CompiledFunction<A, R>) => Promise<T>): Promise<T> => {
    if (real && waiting === 0) return use(real);
    const grad = isGradEnabled(), device = getDefaultDevice();
    waiting++;
    return load().then(
      (m) => {
        waiting--;
        real ??= m.compile(fn, options);
        const f = real;
        return asAt(grad, device, () => use(f));
      },
      (e: unknown) => {
        waiting--;
        throw e;
      },
    );
  };
  const step = ((...args: A) => later((f) => f(...args))) as CompiledFunction<A, R>;
  for (const name of Object.keys(forwarded) as (keyof typeof forwarded)[]) {
    Object.defineProperty(step, name, { value: (...args: A) => later((f): Promise<unknown> => f[name](...args)) });
  }
  Object.defineProperty(step, 'traces', { get: () => real?.traces ?? 0 });
  return step;
}
