// Loads kiln from ../index.ts through its public API only (API.md).
//
// kiln is being written while this bench is; so the module is imported
// dynamically and described here by the small part of API.md the benchmarks
// use. A missing index.ts, a missing `compile` or a missing `webgpu` becomes a
// note in the tables instead of a crash.

export type Device = 'cpu' | 'webgpu';

export interface KTensor {
  shape: number[];
  grad: KTensor | null;
  add(o: KTensor | number): KTensor;
  sub(o: KTensor | number): KTensor;
  mul(o: KTensor | number): KTensor;
  pow(o: KTensor | number): KTensor;
  relu(): KTensor;
  sum(): KTensor;
  matmul(o: KTensor): KTensor;
  index(...idx: (number | null | [number?, number?, number?])[]): KTensor;
  backward(): void;
  item(): Promise<number>;
  itemSync(): number;
  data(): Promise<Float32Array | Int32Array | Uint8Array>;
  to(device: Device): KTensor;
}

export interface KParameter extends KTensor {}

export interface KModule {
  forward(...args: KTensor[]): KTensor;
  parameters(): KParameter[];
  to(device: Device): KModule;
  zeroGrad(): void;
}

export interface KOptimizer {
  step(): void;
  zeroGrad(): void;
}

export type KCompiled = ((...args: KTensor[]) => Promise<unknown>) & {
  lower?: (...args: KTensor[]) => Promise<unknown>;
};

interface CreationOpts {
  dtype?: 'float32' | 'int32' | 'bool';
  device?: Device;
  requiresGrad?: boolean;
  shape?: number[];
}

export interface Kiln {
  tensor(data: unknown, opts?: CreationOpts): KTensor;
  manualSeed(n: number): void;
  nn: {
    Parameter: new (t: KTensor, opts?: { requiresGrad?: boolean }) => KParameter;
    Linear: new (inF: number, outF: number, opts?: { bias?: boolean; device?: Device }) => KModule;
    ReLU: new () => KModule;
    Sequential: new (...mods: KModule[]) => KModule;
  };
  F: {
    relu(x: KTensor): KTensor;
    crossEntropy(logits: KTensor, target: KTensor): KTensor;
  };
  optim: {
    SGD: new (params: KParameter[], opts: { lr: number }) => KOptimizer;
  };
  noGrad<T>(fn: () => T): T;
  compile?: (fn: (...args: KTensor[]) => unknown, options?: { device?: Device; fuse?: boolean }) => KCompiled;
  webgpu?: { available(): Promise<boolean>; sync?(): Promise<void> };
  matmul?: (a: KTensor, b: KTensor) => KTensor;
}

export interface KilnLoad {
  kiln: Kiln | null;
  /** Why kiln (or part of it) is unavailable; null when everything loaded. */
  error: string | null;
  hasCompile: boolean;
  hasWebgpu: boolean;
}

let cached: KilnLoad | null = null;

export async function loadKiln(): Promise<KilnLoad> {
  if (cached) return cached;
  try {
    // A variable specifier keeps TypeScript from requiring index.ts to exist.
    const spec = new URL('../../index.ts', import.meta.url).href;
    const mod = (await import(spec)) as Record<string, unknown>;
    const kiln = ((mod.default && typeof mod.tensor !== 'function' ? mod.default : mod) as unknown) as Kiln;
    if (typeof kiln.tensor !== 'function') {
      cached = { kiln: null, error: 'index.ts does not export tensor() yet', hasCompile: false, hasWebgpu: false };
    } else {
      cached = {
        kiln,
        error: null,
        hasCompile: typeof kiln.compile === 'function',
        hasWebgpu: !!kiln.webgpu && typeof kiln.webgpu.available === 'function',
      };
    }
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    cached = { kiln: null, error: `import of ../index.ts failed: ${msg}`, hasCompile: false, hasWebgpu: false };
  }
  return cached;
}

/** The note printed for a kiln row that cannot run. */
export function kilnMissing(load: KilnLoad, what: 'eager' | 'compiled' | 'webgpu'): string | null {
  if (!load.kiln) return `not available (${load.error})`;
  if (what === 'compiled' && !load.hasCompile) return 'not available (compile() missing)';
  if (what === 'webgpu' && !load.hasWebgpu) return 'not available (kiln.webgpu missing)';
  return null;
}
