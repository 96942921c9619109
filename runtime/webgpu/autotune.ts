// The WebGPU tuning policy: what an adapter's kernels look like before any tuning (workgroup cap,
// reduce tree threshold, untuned matmul variants: `adapterPolicy`, part of the device's description),
// and matmul autotuning.
//
// Matmul autotuning: the first time a matmul kernel of a given shape and operand layout is prepared on
// an adapter, each applicable kernel variant (compiler/codegen/wgsl.ts MatmulVariant) is timed on
// scratch buffers and the fastest is remembered, in memory keyed by adapter + shape, and persisted
// (Node: a JSON file, ~/.cache/kiln/matmul-autotune.json, else the OS temp dir; browsers: IndexedDB)
// so that a later process or page load reuses it (see "the cache" below).
//
// WebGPU cannot wait synchronously, and kernels are prepared synchronously, so tuning runs in the
// background: until it finishes, launches use the adapter's default (defaultMatmul below); when it
// finishes, `onTuned` listeners run (the backend drops its cached pipelines so the next launch picks
// the winner). Tunes run one at a time. Each GPU call of a tune runs inside its own error scopes.
//
// The budget (~0.5 s per shape) counts the tune's own compile and run time, not waits for other work.
// Each step of a tune waits for the program's queue to be quiet (see "yielding" below), so a tune
// never halves the speed of the loop that started it.
//
// Timing: each sample submits one dispatch of one variant and waits for it; with 'timestamp-query'
// (lavapipe has it) the sample is the pass's GPU time, else the wall time of a dispatch that had the
// queue to itself; the best of a few samples counts. Large problems are timed on a proxy with fewer
// rows (same n, k, strides and epilogue; batch 1), so a tune stays near its budget on lavapipe
// (variants past the budget are skipped); a proxy's winner must then also beat the incumbent on the
// product's own rows. Tiny matmuls (m·n·k·batch < 2^18) are never tuned. KILN_AUTOTUNE=0 turns tuning
// off (always the default variant); KILN_AUTOTUNE_CACHE=path moves the cache file ('' : no file). A
// tune cut short by its budget (cold shader caches: lavapipe compiles a matmul shader in 0.2-0.5 s,
// seconds on a loaded machine) is used and persisted with the variants it timed; the next process
// times the rest against it. A variant must beat the incumbent (the default, or the choice so far) by
// more than 5% (15% on software adapters), over at least two samples, to be chosen.

import type { Kernel, KernelSpec } from '../../ir/kernel.ts';
import { DEFAULT_LIMITS, DEFAULT_MATMUL, matmulVariantFits, matmulVariantKey, packUniform, subgroupLanes, uniformLayout, wgslSource, type MatmulVariant, type WgslKernel, type WgslOptions } from '../../compiler/codegen/wgsl.ts';
import { untunedMatmul, workOf, type MatmulDefault, type WgslTarget } from '../../compiler/target.ts';
import { env, nodeFs, nodePath } from '../node.ts';
import type { AdapterInfo } from './device.ts';

type Matmul = Extract<Kernel, { kind: 'matmul' }>;

/** Below this many multiply-adds (m·n·k·batch) the default variant is used untuned. */
export const TUNE_MIN_WORK = 2 ** 18;
/** Wall-clock budget of one shape's tune, in ms. */
export const TUNE_BUDGET_MS = 500;
/**
 * Multiply-adds of one timed proxy dispatch (rows are cut down to about this, in multiples of 64). A
 * 64-row proxy of 1024^3 (2^25) picked 8x8 blocks on lavapipe that ran the full product at half the
 * speed of 4x4 blocks (its a rows stay in cache); 2^27 keeps 128 rows.
 */
const PROXY_WORK = 2 ** 27;

export function autotuneEnabled(): boolean {
  return env('KILN_AUTOTUNE') !== '0';
}

/** Bump when codegen, the candidate lists or the timing change what a cached choice means (old entries are ignored; v4: GPU-timestamp samples, proxy winners confirmed; v5: 4x8 @ 8x1; v6: subgroup lanes variants). */
const CACHE_VERSION = 6;
export const adapterKey = (i: AdapterInfo): string => `v${CACHE_VERSION}:` + [i.vendor, i.architecture, i.device, i.description].join('/');

/** The key of a matmul spec's tuning decision: shape, operand layouts, dtypes, alignment (not the epilogue). */
export function shapeKey(spec: KernelSpec, aligned: readonly boolean[] | undefined): string | null {
  const k = spec.kernel;
  if (k.kind !== 'matmul' || k.a.kind !== 'load' || k.b.kind !== 'load') return null;
  const a = k.a, b = k.b;
  const nb = k.batch.length;
  const lay = (v: { strides: readonly number[]; offset: number }) => `${v.strides.slice(nb).join(',')};${v.strides.slice(0, nb).map((s) => s % 4).join(',')};${v.offset % 4}`;
  return `${k.batch.join('x')}|${k.m}x${k.n}x${k.k}|a:${lay(a.view)}:${a.dtype}|b:${lay(b.view)}:${b.dtype}|al:${aligned?.[a.arg] ? 1 : 0}${aligned?.[b.arg] ? 1 : 0}`;
}

export function worthTuning(spec: KernelSpec): boolean {
  return spec.kernel.kind === 'matmul' && workOf(spec) >= TUNE_MIN_WORK;
}

// ---- the adapter's untuned choices (tuning policy; codegen only applies the options it is given) ----

/** Software adapters (lavapipe, SwiftShader) pay per invocation and compile shaders slowly. */
export function isSoftwareAdapter(i: AdapterInfo): boolean {
  // lavapipe: architecture 'software'; SwiftShader in Chromium: architecture 'swiftshader', no device
  return i.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(`${i.architecture} ${i.device} ${i.description}`);
}

/**
 * The codegen choices for an adapter: the policy half of its description (compiler/target.ts; the
 * limits are the device's).
 * - Workgroup cap for per-element kernels: software adapters pay per invocation, so fewer invocations
 *   each looping over more elements are several times faster there (1M-element add: 22 ms with 4096
 *   workgroups, 3 ms with 256).
 * - Workgroup trees for reductions only pay off for a handful of outputs on software adapters
 *   (measured: sum of [1000, 1000] over dim 1, serial 1.0 ms vs tree 2.9 ms; sum of 1M to one value,
 *   serial 5.5 ms vs tree 1.4 ms).
 */
export function adapterPolicy(i: AdapterInfo, subgroupMinSize = 0): Pick<WgslTarget, 'options' | 'matmul'> {
  const software = isSoftwareAdapter(i);
  // convolutions as the matmul: subgroup rounds where a software adapter's device has subgroups
  const convLanes = software ? subgroupLanes(subgroupMinSize) : 0;
  return { options: { maxWorkgroups: software ? 256 : 4096, treeMaxOutputs: software ? 16 : 16384, convLanes }, matmul: matmulDefaults(software, subgroupMinSize) };
}

/**
 * Software adapters' untuned choice for products worth tuning where the device has no subgroups: 4x4
 * blocks in one row of 8 invocations (every invocation of a workgroup reads the same a values). On
 * lavapipe (2026-11-30, 1024^3, one 64-row proxy, busy 2-core machine): 7.7 GFLOP/s, against 5.6 for
 * 8x4 blocks @ 8x1, 5.3 for 8x8 @ 8x1, 2.6 for the 4x4 @ 8x8 default and 2.2 for 8x8 @ 8x8. It compiles
 * as fast as the 4x4 default (8x8 blocks take about twice as long).
 */
export const SOFTWARE_MATMUL: MatmulVariant = { bm: 4, bn: 4, wg: [8, 1], vec4: true, tiled: false };

/**
 * Software adapters' untuned choice for large products (from LARGE_WORK multiply-adds): 4x8 blocks in
 * one row of 8 invocations. lavapipe, 1024^3, full products interleaved in one process (2026-11-30,
 * three runs, load 1.5-2.8 on 2 cores): median 160-178 ms against 172-211 ms for 4x4 @ 8x1, which is
 * the 8x1 reference kernel's shape. Below LARGE_WORK (the MLP's products) 4x4 stays: it compiles faster
 * (the cold first call) and the proxy timings there showed no consistent winner.
 */
export const SOFTWARE_LARGE_MATMUL: MatmulVariant = { bm: 4, bn: 8, wg: [8, 1], vec4: true, tiled: false };
const LARGE_WORK = 2 ** 27;

/**
 * Software adapters' untuned choice for products worth tuning where the device has subgroups: 8x4
 * blocks in one subgroup of 8 invocations (4 where subgroups are smaller: SwiftShader's hold 4) that
 * loads a's values together (MatmulVariant.lanes).
 * - lavapipe (Mesa 25.0), hand-written kernels in one process, 2026-11-30: 1024^3 at 22.6 GFLOP/s against
 *   11.4 for the 8x1 reference kernel; 512^3 18.2 against 8.2, where 4x4 blocks so reached 11.9, 4x8 6.8,
 *   8x8 9.3 and 16x4 12.1.
 * - SwiftShader in Chromium 156, 256^3, kiln's kernel: 7.0-7.2 ms against 10.0-10.2 for the references;
 *   4x4 blocks 9.3-9.8, 8x8 8.1-8.3.
 */
export const SOFTWARE_LANES_MATMUL: MatmulVariant = { bm: 8, bn: 4, wg: [8, 1], vec4: true, tiled: false, lanes: 8 };
export const SOFTWARE_LANES4_MATMUL: MatmulVariant = { bm: 8, bn: 4, wg: [4, 1], vec4: true, tiled: false, lanes: 4 };

/**
 * The untuned matmul variants of an adapter by size: 4x4 blocks (codegen's DEFAULT_MATMUL), and on
 * software adapters SOFTWARE_MATMUL for products worth tuning and SOFTWARE_LARGE_MATMUL for large ones
 * (KILN_AUTOTUNE=0 launches exactly these).
 */
export function matmulDefaults(software: boolean, subgroupMinSize = 0): MatmulDefault[] {
  const all = [{ minWork: 0, variant: DEFAULT_MATMUL }];
  const lanes = software ? subgroupLanes(subgroupMinSize) : 0;
  if (lanes) return [...all, { minWork: TUNE_MIN_WORK, variant: lanes === 8 ? SOFTWARE_LANES_MATMUL : SOFTWARE_LANES4_MATMUL }];
  return software ? [...all, { minWork: TUNE_MIN_WORK, variant: SOFTWARE_MATMUL }, { minWork: LARGE_WORK, variant: SOFTWARE_LARGE_MATMUL }] : all;
}

/** The untuned choice for a product of `work` multiply-adds on an adapter (`subgroupMinSize`: 0 without subgroups). */
export const defaultMatmul = (software: boolean, work: number, subgroupMinSize = 0): MatmulVariant => untunedMatmul(matmulDefaults(software, subgroupMinSize), work);

/** The variants the tuner tries (those a device's limits allow; see `matmulVariantFits`). */
export function matmulCandidates(software: boolean): MatmulVariant[] {
  const r = (bm: number, bn: number, wx: number, wy: number): MatmulVariant => ({ bm, bn, wg: [wx, wy], vec4: true, tiled: false });
  const t = (bm: number, bn: number, wx: number, wy: number): MatmulVariant => ({ bm, bn, wg: [wx, wy], vec4: true, tiled: true });
  // Software adapters (lavapipe, SwiftShader) compile each shader for hundreds of ms, so they get a
  // short list of register-blocked shapes that won somewhere on lavapipe, best first (a tune cut short
  // tries these first): one row of invocations per workgroup (wg [x, 1]) makes a's loads uniform across
  // the workgroup (4x8 blocks so won 1024^3); 8x8 blocks in 8x8 invocations won on some MLP products; 4x16
  // on narrow ones.
  // Where the device has subgroups, a subgroup loading a's values together (lanes) goes first.
  const s = (bm: number, lanes: number): MatmulVariant => ({ bm, bn: 4, wg: [lanes, 1], vec4: true, tiled: false, lanes });
  if (software) return [s(8, 8), s(4, 8), s(8, 4), r(4, 4, 8, 1), r(4, 8, 8, 1), r(8, 8, 8, 8), r(8, 4, 8, 1), r(8, 8, 8, 1), r(4, 4, 4, 16)];
  return [
    t(4, 4, 16, 16), t(8, 4, 16, 16), t(4, 8, 16, 16), t(8, 8, 8, 8), t(4, 4, 8, 8), t(4, 8, 16, 8),
    r(4, 4, 16, 16), r(8, 4, 16, 8), r(4, 8, 16, 8), r(8, 8, 16, 16), r(2, 8, 16, 16), r(1, 8, 32, 8), r(8, 4, 64, 1),
  ];
}

export interface MatmulChoice {
  device: GPUDevice;
  /** adapterKey of the device's adapter, and whether it is a software one */
  adapter: string;
  software: boolean;
  target: WgslTarget;
  spec: KernelSpec;
  aligned: readonly boolean[] | undefined;
  /** false: never start a tune (aliased operands: the tuner's scratch buffers would not match) */
  mayTune: boolean;
}

/** The variant a matmul launches with: the tuned one, else the untuned default (starting a tune when worth it). */
export function chooseMatmul(c: MatmulChoice): MatmulVariant {
  const fallback = untunedMatmul(c.target.matmul, workOf(c.spec));
  if (!c.mayTune || !autotuneEnabled() || !worthTuning(c.spec)) return fallback;
  const shape = shapeKey(c.spec, c.aligned);
  if (!shape) return fallback;
  const known = cachedEntry(c.adapter, shape);
  // not tuned yet, or a tune cut short by its budget (resumed once per process): tune in the background
  // (a variant tuned where the device had a feature this one lacks, e.g. subgroups, is not launched)
  if (known && !matmulVariantFits(known.variant, c.target.limits)) return fallback;
  if (known && (!known.tried || tunedHere.has(`${c.adapter}#${shape}`))) return known.variant;
  void requestTune({ device: c.device, adapter: c.adapter, spec: c.spec, aligned: c.aligned, opts: { ...c.target.options, limits: c.target.limits }, software: c.software });
  return known?.variant ?? fallback;
}

// ---- the cache -------------------------------------------------------------------------------------
//
// One entry per adapter + shape: the chosen variant, and, for a tune its budget cut short, the
// variants it timed (`tried`): a later tune (this process or the next) times the rest against the
// choice so far, so every process makes progress and a cold shader cache never stops the winner from
// being found and kept. Node persists entries to a JSON file, browsers to IndexedDB (loaded by
// `loadAutotuneCache`, which `kiln.webgpu.init()` awaits). Persisted data is untrusted: a corrupt
// file is ignored with a console note (once), and entries that are not a known variant are skipped.

export interface CacheEntry {
  variant: MatmulVariant;
  /** keys (matmulVariantKey) of the variants timed so far; absent once the tune is complete */
  tried?: string[];
}
type CacheFile = Record<string, Record<string, CacheEntry>>;
const memory = new Map<string, CacheEntry>();
let loaded = false;
const noted = new Set<string>();

/** A console note, once per text (a corrupt cache is worth one line, not one per lookup). */
function note(text: string): void {
  if (noted.has(text)) return;
  noted.add(text);
  console.warn(`kiln: ${text}`);
}

/** The Node cache file (KILN_AUTOTUNE_CACHE, else ~/.cache/kiln, else the temp dir); null in a browser or when off. */
export function autotuneCachePath(): string | null {
  const fs = nodeFs(), path = nodePath();
  if (!fs || !path) return null;
  const override = env('KILN_AUTOTUNE_CACHE');
  if (override !== undefined) return override || null;
  const home = env('HOME') || env('USERPROFILE');
  if (home) return path.join(home, '.cache', 'kiln', 'matmul-autotune.json');
  const os = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule?.('node:os') as { tmpdir(): string } | undefined;
  return os ? path.join(os.tmpdir(), 'kiln-matmul-autotune.json') : null;
}

function validVariant(v: unknown): v is MatmulVariant {
  const x = v as MatmulVariant;
  return !!x && typeof x === 'object' && [1, 2, 4, 8].includes(x.bm) && [4, 8].includes(x.bn) && Array.isArray(x.wg) && x.wg.length === 2
    && x.wg.every((w) => Number.isInteger(w) && w >= 1 && w <= 1024) && typeof x.vec4 === 'boolean' && typeof x.tiled === 'boolean'
    && (x.lanes === undefined || [0, 4, 8].includes(x.lanes));
}

/** A persisted entry checked field by field (a copy holding only the known fields), or null. */
function validEntry(e: unknown): CacheEntry | null {
  if (!e || typeof e !== 'object') return null;
  const { variant, tried } = e as { variant?: unknown; tried?: unknown };
  if (!validVariant(variant)) return null;
  const v: MatmulVariant = { bm: variant.bm, bn: variant.bn, wg: [variant.wg[0], variant.wg[1]], vec4: variant.vec4, tiled: variant.tiled, ...(variant.lanes && { lanes: variant.lanes }) };
  if (tried === undefined) return { variant: v };
  if (!Array.isArray(tried) || !tried.every((t) => typeof t === 'string')) return null;
  return { variant: v, tried: [...tried] };
}

/** Reads a parsed cache (file or IndexedDB) into memory; what is not an object of entries is skipped. */
function absorb(data: unknown, where: string): void {
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    note(`ignoring the matmul autotune cache ${where}: not a JSON object of adapters`);
    return;
  }
  let bad = 0;
  for (const [ad, shapes] of Object.entries(data as Record<string, unknown>)) {
    if (!ad.startsWith(`v${CACHE_VERSION}:`)) continue; // another cache version's choices (kept in the file)
    if (!shapes || typeof shapes !== 'object') { bad++; continue; }
    for (const [sk, e] of Object.entries(shapes as Record<string, unknown>)) {
      const entry = validEntry(e);
      if (entry) { if (!memory.has(`${ad}#${sk}`)) memory.set(`${ad}#${sk}`, entry); } else bad++;
    }
  }
  if (bad) note(`ignoring ${bad} malformed entr${bad === 1 ? 'y' : 'ies'} of the matmul autotune cache ${where}`);
}

function readFile(p: string): CacheFile | null {
  const fs = nodeFs();
  if (!fs || !fs.existsSync(p)) return null;
  let text: string;
  try { text = fs.readFileSync(p, 'utf8'); } catch (e) {
    note(`ignoring the matmul autotune cache ${p}: it cannot be read (${e instanceof Error ? e.message : String(e)})`);
    return null;
  }
  try { return JSON.parse(text) as CacheFile; } catch (e) {
    note(`ignoring the matmul autotune cache ${p}: it is not valid JSON (${e instanceof Error ? e.message : String(e)}); the next tune rewrites it`);
    return null;
  }
}

/** Node: reads the cache file once (synchronously; browsers load through loadAutotuneCache). */
function loadFile(): void {
  if (loaded) return;
  loaded = true;
  const p = autotuneCachePath();
  if (!p) return;
  const data = readFile(p);
  if (data !== null) absorb(data, p);
}

// IndexedDB (browsers): one object store, key `${adapter}#${shape}`, value a CacheEntry.
const IDB_NAME = 'kiln', IDB_STORE = 'matmul-autotune';
type IdbFactory = { open(name: string, version?: number): IDBOpenDBRequest };
const indexedDb = (): IdbFactory | null => (globalThis as { indexedDB?: IdbFactory }).indexedDB ?? null;
let idb: Promise<IDBDatabase | null> | null = null;

function openIdb(): Promise<IDBDatabase | null> {
  const f = indexedDb();
  if (!f) return Promise.resolve(null);
  return (idb ??= new Promise<IDBDatabase | null>((resolve) => {
    try {
      const req = f.open(IDB_NAME, 1);
      req.onupgradeneeded = () => { if (!req.result.objectStoreNames.contains(IDB_STORE)) req.result.createObjectStore(IDB_STORE); };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => { note(`the matmul autotune cache (IndexedDB) cannot be opened: ${req.error?.message ?? 'unknown error'}`); resolve(null); };
    } catch {
      resolve(null); // e.g. storage disabled for this origin
    }
  }));
}

/**
 * Loads the persisted tuning choices (browsers: IndexedDB, which is asynchronous; Node: the cache
 * file). `kiln.webgpu.init()` awaits it, so the first matmul of a page load already finds its winner.
 */
export async function loadAutotuneCache(): Promise<void> {
  if (!indexedDb() || !autotuneEnabled()) return loadFile();
  const db = await openIdb();
  if (!db) return;
  await new Promise<void>((resolve) => {
    try {
      const store = db.transaction(IDB_STORE, 'readonly').objectStore(IDB_STORE);
      const keys = store.getAllKeys(), values = store.getAll();
      values.onsuccess = () => {
        const data: Record<string, Record<string, unknown>> = {};
        keys.result.forEach((k, i) => {
          const key = String(k), at = key.indexOf('#');
          if (at > 0) (data[key.slice(0, at)] ??= {})[key.slice(at + 1)] = values.result[i];
        });
        absorb(data, '(IndexedDB)');
        resolve();
      };
      values.onerror = () => resolve();
    } catch {
      resolve();
    }
  });
}

function persist(adapter: string, shape: string, entry: CacheEntry): void {
  if (indexedDb()) {
    void openIdb().then((db) => {
      try { db?.transaction(IDB_STORE, 'readwrite').objectStore(IDB_STORE).put(entry, `${adapter}#${shape}`); } catch { /* best effort */ }
    });
    return;
  }
  const p = autotuneCachePath();
  const fs = nodeFs(), path = nodePath();
  if (!p || !fs || !path) return;
  try {
    // merge with what another process may have written meanwhile (a corrupt file is replaced)
    let data = readFile(p) ?? {};
    if (!data || typeof data !== 'object' || Array.isArray(data)) data = {};
    (data[adapter] ??= {})[shape] = entry;
    fs.mkdirSync(path.dirname(p), { recursive: true });
    const tmp = `${p}.${(globalThis as { process?: { pid?: number } }).process?.pid ?? 0}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(data, null, 1));
    fs.renameSync(tmp, p);
  } catch (e) {
    note(`could not write the matmul autotune cache ${p}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** The cached entry for (adapter, shape), or undefined when not tuned yet. */
export function cachedEntry(adapter: string, shape: string): CacheEntry | undefined {
  loadFile();
  return memory.get(`${adapter}#${shape}`);
}

/** The cached choice for (adapter, shape) (complete or not), or undefined when not tuned yet. */
export const cachedVariant = (adapter: string, shape: string): MatmulVariant | undefined => cachedEntry(adapter, shape)?.variant;

/** Forgets the in-memory cache (tests); `alsoFile` re-reads the file on the next lookup. */
export function clearAutotuneCache(alsoFile = true): void {
  memory.clear();
  if (alsoFile) { loaded = false; noted.clear(); }
}

// ---- yielding to the user's work -------------------------------------------------------------------
//
// A tune shares the device (and, on software adapters, the CPU cores) with the program that asked for
// it. Run alongside a busy loop it slowed that loop's products by 1.5-2x on lavapipe for seconds (a
// fresh process measured 56% of a reference kernel), and the loop's queued work made its own timings
// noise. So each step of a tune (compiling and warming up one variant, or one timed sample) first
// waits for a quiet queue: everything submitted has run and the backend (noteUserSubmit) submitted
// nothing for QUIET_MS. A program that never leaves the queue quiet still gets its tune, but not in its
// first seconds: until FIRST_WAIT_MS after the process's first tune step, steps wait for quiet; later
// a step waits at most YIELD_FACTOR times the previous step's duration (at least MIN_YIELD_MS), so
// under continuous load tuning takes about 1 / (1 + YIELD_FACTOR) of the time once it has started.
// A timed sample that overlapped the program's work is counted by GPU timestamps where the device has
// them (else it is retaken). (On a busy 2-core machine a forced first step, compiling a variant while
// the program ran, still cost a fresh process's 1024^3 loop a third of its speed over its first 3 s.)
// A pending tune keeps Node's event loop alive, so a script's tune runs, and is persisted, after its
// own work ends.

let userSubmits = 0;
/** The backend calls this for every submission of the program's own work. */
export function noteUserSubmit(): void { userSubmits++; }
/**
 * A queue counts as quiet once the program has submitted nothing for this long after its work ran:
 * longer than a loop's turn between reading a result and launching again, even on a loaded machine
 * (with 4 ms, a busy 2-core machine's scheduling gaps let compiles in between a loop's products).
 */
const QUIET_MS = 50;
const FIRST_WAIT_MS = 5000;
/** When this process's first tune step came (FIRST_WAIT_MS counts from it). */
let firstTuneAt: number | null = null;
const YIELD_FACTOR = 4;
const MIN_YIELD_MS = 50;

/** Waits for a quiet queue, or `maxWaitMs` at most; true when it was quiet. */
export async function quietQueue(queue: { onSubmittedWorkDone(): Promise<unknown> }, maxWaitMs: number): Promise<boolean> {
  const t0 = performance.now();
  for (;;) {
    const seen = userSubmits;
    await queue.onSubmittedWorkDone();
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    if (userSubmits === seen) return true;
    if (performance.now() - t0 >= maxWaitMs) return false;
  }
}

// ---- tuning ----------------------------------------------------------------------------------------

const listeners = new Set<() => void>();
export function onTuned(f: () => void): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}

const inFlight = new Map<string, Promise<MatmulVariant>>();
/** adapter#shape keys tuned in this process (a cut-short tune resumes in the next process, not in a loop here) */
const tunedHere = new Set<string>();
let chain: Promise<unknown> = Promise.resolve();

export interface TuneRequest {
  device: GPUDevice;
  adapter: string;
  spec: KernelSpec;
  aligned: readonly boolean[] | undefined;
  /** codegen options besides the variant (limits, workgroup cap) */
  opts: WgslOptions;
  /** a software adapter (its candidate list and untuned default) */
  software: boolean;
  /** the variants to time (default: applicableVariants, less those a cut-short tune already timed) */
  variants?: MatmulVariant[];
  /** ms of compiling and timing before the tune stops early (default TUNE_BUDGET_MS) */
  budgetMs?: number;
}

export interface TuneReport {
  shape: string;
  chosen: MatmulVariant;
  timings: { variant: string; ms: number }[];
  proxyRows: number;
  totalMs: number;
  /** false: the budget ran out before every variant was timed (the rest are timed by a later tune) */
  complete: boolean;
  /** keys of the variants this tune compiled (timed or failed) */
  tried: string[];
  /** a proxy's challenger timed on the product's own rows against the incumbent (ms, best of CONFIRM_SAMPLES) */
  confirmed?: { incumbent: number; challenger: number };
}
let lastReports: TuneReport[] = [];
/** Reports of the tunes run so far in this process (for inspection and benchmarks). */
export function tuneReports(): readonly TuneReport[] { return lastReports; }

/**
 * Starts tuning (unless tuned, or already running) and returns the choice's promise. A tune an earlier
 * budget cut short resumes: the choice so far is timed first (it stays unless another variant beats it
 * by 5%), then the variants not yet timed. The result lands in the cache; `onTuned` listeners run after.
 */
export function requestTune(req: TuneRequest): Promise<MatmulVariant> {
  const shape = shapeKey(req.spec, req.aligned);
  const fallback = defaultMatmul(req.software, workOf(req.spec));
  if (!shape) return Promise.resolve(fallback);
  const key = `${req.adapter}#${shape}`;
  const known = cachedEntry(req.adapter, shape);
  if (known && !known.tried) return Promise.resolve(known.variant);
  const running = inFlight.get(key);
  if (running) return running;
  const tried = new Set(known?.tried ?? []);
  const variants = req.variants ?? (known
    ? [known.variant, ...applicableVariants(req.spec, req.opts, req.software).filter((v) => !tried.has(matmulVariantKey(v)))]
    : applicableVariants(req.spec, req.opts, req.software));
  const p = chain.then(() => tune({ ...req, variants }, shape, req.budgetMs ?? TUNE_BUDGET_MS)).then((r): CacheEntry => {
    for (const t of r.tried) tried.add(t);
    // complete once every applicable variant has been timed (now or by earlier tunes)
    const left = applicableVariants(req.spec, req.opts, req.software).filter((v) => !tried.has(matmulVariantKey(v)));
    return (req.variants ? r.complete : left.length === 0) ? { variant: r.chosen } : { variant: r.chosen, tried: [...tried] };
  }, () => null).then((entry) => {
    // a tune that failed (scratch buffers not allocated) keeps what was known, for this process only
    memory.set(key, entry ?? known ?? { variant: fallback });
    tunedHere.add(key);
    inFlight.delete(key);
    if (entry) persist(req.adapter, shape, entry);
    for (const f of listeners) f();
    return (entry ?? known)?.variant ?? fallback;
  });
  chain = p;
  inFlight.set(key, p);
  return p;
}

/** Tunes not yet started wait for `p` (settled either way): keeps them off a compiled step's first call. */
export function holdTunesUntil(p: Promise<unknown>): void {
  chain = Promise.all([chain, p.catch(() => undefined)]);
}

/** How many tunes are queued or running. */
export const tunesPending = (): number => inFlight.size;

/** Resolves once every tune started so far has finished. */
export async function tunesSettled(): Promise<void> {
  while (inFlight.size) await Promise.all([...inFlight.values()]);
}

/** The variants worth timing for a spec on a device (the adapter's untuned default first). */
export function applicableVariants(spec: KernelSpec, opts: WgslOptions, software: boolean): MatmulVariant[] {
  const k = spec.kernel as Matmul;
  const lim = { ...DEFAULT_LIMITS, ...opts.limits };
  const seen = new Set<string>();
  const out: MatmulVariant[] = [];
  const first = defaultMatmul(software, workOf(spec), lim.subgroupMinSize);
  for (const v of [first, ...matmulCandidates(software)]) {
    const key = matmulVariantKey(v);
    if (seen.has(key) || !matmulVariantFits(v, lim)) continue;
    // a tile far larger than the output wastes most invocations
    if (v !== first && (v.bm * v.wg[1] > 2 * Math.max(k.m, 8) || v.bn * v.wg[0] > 2 * Math.max(k.n, 8))) continue;
    seen.add(key);
    out.push(v);
  }
  return out;
}

/** The proxy spec that is timed: batch 1 and at most about PROXY_WORK multiply-adds (fewer rows). */
export function proxySpec(spec: KernelSpec): { spec: KernelSpec; rows: number } {
  const k = spec.kernel as Matmul;
  let rows = k.m;
  const perRow = Math.max(1, k.n * k.k);
  if (k.m * perRow > PROXY_WORK) rows = Math.min(k.m, Math.max(64, Math.floor(PROXY_WORK / perRow / 64) * 64));
  const kernel: Matmul = { ...k, batch: k.batch.map(() => 1), m: rows };
  return { spec: { ...spec, kernel }, rows };
}

/** The GPU objects of one tune: error-scoped calls, scratch buffers, timing, and yielding steps. */
class TuneSession {
  /** ms spent compiling and running this tune's work (waits for the program's work excluded) */
  own = 0;
  /** the last step's duration (null before the first step), and whether it found a quiet queue */
  private lastStep: number | null = null;
  private quiet = true;
  private readonly owned: { destroy(): void }[] = [];

  private constructor(readonly d: GPUDevice, private readonly stamps: { set: GPUQuerySet; resolved: GPUBuffer; read: GPUBuffer } | null) {}

  static async open(d: GPUDevice): Promise<TuneSession> {
    // GPU timestamps around a timed pass where the device has them: a sample is then the tune's own
    // dispatches even when the program's work was queued just before them
    const made = d.features.has('timestamp-query') ? scoped(d, () => ({
      set: d.createQuerySet({ type: 'timestamp', count: 2 }),
      resolved: d.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }),
      read: d.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
    })) : null;
    const stamps = made?.value && !(await made.failed) ? made.value : null;
    const session = new TuneSession(d, stamps);
    if (stamps) session.owned.push(stamps.set, stamps.resolved, stamps.read);
    return session;
  }

  close(): void { for (const o of this.owned) o.destroy(); }

  /** Runs `f` once the queue is quiet (or the wait hit its cap); see "yielding" above. */
  private async step<T>(f: () => Promise<T>): Promise<T> {
    firstTuneAt ??= performance.now();
    const protectedFor = FIRST_WAIT_MS - (performance.now() - firstTuneAt);
    this.quiet = await quietQueue(this.d.queue, Math.max(MIN_YIELD_MS, protectedFor, YIELD_FACTOR * (this.lastStep ?? 0)));
    const s = performance.now();
    try { return await f(); } finally { this.lastStep = performance.now() - s; }
  }

  /** Scratch buffers for a spec (one per argument, offsets 0) and its uniform; null when out of memory. */
  async scratch(spec: KernelSpec): Promise<{ buffers: GPUBuffer[]; uniform: GPUBuffer; bytes: number } | null> {
    const d = this.d;
    const { bytes } = uniformLayout(spec.args.length, spec.params);
    const made = scoped(d, () => {
      const buffers = spec.args.map((a) => d.createBuffer({ size: Math.max(16, Math.ceil((a.size * 4) / 16) * 16), usage: GPUBufferUsage.STORAGE }));
      const uniform = d.createBuffer({ size: Math.max(16, bytes), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      const host = new ArrayBuffer(Math.max(16, bytes));
      packUniform(new Int32Array(host), new Float32Array(host), 0, spec.args.length, spec.params, spec.args.map(() => 0), []);
      d.queue.writeBuffer(uniform, 0, host);
      return { buffers, uniform, bytes };
    });
    if (made.value) this.owned.push(...made.value.buffers, made.value.uniform);
    return made.value && !(await made.failed) ? made.value : null;
  }

  /**
   * Compiles variant `v` of `spec` bound to `scratch` and warms it up (one workgroup: software drivers
   * compile a shader at its first dispatch); returns its timer (ms per dispatch), or null when it fails.
   */
  async prepare(spec: KernelSpec, opts: WgslOptions, v: MatmulVariant, scratch: { buffers: GPUBuffer[]; uniform: GPUBuffer; bytes: number }): Promise<(() => Promise<number>) | null> {
    const d = this.d;
    let kernel: WgslKernel;
    try { kernel = wgslSource(spec, { ...opts, matmul: v }); } catch { return null; }
    const made = await this.step(async () => {
      const c0 = performance.now();
      const m = scoped(d, () => {
        const module = d.createShaderModule({ code: kernel.code, label: `tune ${matmulVariantKey(v)}` });
        const layout = d.createBindGroupLayout({
          entries: [
            { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
            ...kernel.bindings.map((b) => ({ binding: b.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: b.access === 'read' ? 'read-only-storage' as const : 'storage' as const } })),
          ],
        });
        const pipeline = d.createComputePipelineAsync({ layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' } });
        pipeline.catch(() => null); // awaited below
        return { layout, pipeline };
      });
      let pipeline: GPUComputePipeline | null = null;
      try { pipeline = m.value ? await m.value.pipeline : null; } catch { pipeline = null; }
      const failed = await m.failed;
      this.own += performance.now() - c0;
      return pipeline && m.value && !failed ? { layout: m.value.layout, pipeline } : null;
    });
    if (!made) return null;
    const bound = scoped(d, () => d.createBindGroup({
      layout: made.layout,
      entries: [{ binding: 0, resource: { buffer: scratch.uniform, offset: 0, size: scratch.bytes } }, ...kernel.bindings.map((b) => ({ binding: b.binding, resource: { buffer: scratch.buffers[b.arg] } }))],
    }));
    if (!bound.value || (await bound.failed)) return null;
    const bind = bound.value, pipe = made.pipeline;
    const run = (grid: readonly [number, number, number]) => this.dispatch(pipe, bind, grid);
    await this.step(() => run([1, 1, 1]));
    // a wall-clock sample that shared the queue with the program is retaken (twice at most)
    return async () => {
      let ms = Infinity;
      for (let attempt = 0; attempt < 3; attempt++) {
        ms = await this.step(() => run(kernel.workgroups));
        if (this.stamps || this.quiet) break;
      }
      return ms;
    };
  }

  /** One dispatch, waited for: its GPU time where timestamps exist, else the wall time. */
  private async dispatch(pipe: GPUComputePipeline, bind: GPUBindGroup, grid: readonly [number, number, number]): Promise<number> {
    const d = this.d, stamps = this.stamps;
    const s = performance.now();
    const sub = scoped(d, () => {
      const enc = d.createCommandEncoder();
      const pass = enc.beginComputePass(stamps ? { timestampWrites: { querySet: stamps.set, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : undefined);
      pass.setPipeline(pipe);
      pass.setBindGroup(0, bind);
      pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
      pass.end();
      if (stamps) {
        enc.resolveQuerySet(stamps.set, 0, 2, stamps.resolved, 0);
        enc.copyBufferToBuffer(stamps.resolved, 0, stamps.read, 0, 16);
      }
      d.queue.submit([enc.finish()]);
    });
    await d.queue.onSubmittedWorkDone();
    let ms = performance.now() - s;
    if (await sub.failed) throw new Error('kiln autotune: a timing dispatch failed');
    if (stamps) {
      await stamps.read.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(stamps.read.getMappedRange().slice(0));
      stamps.read.unmap();
      const gpu = Number(t[1] - t[0]) / 1e6;
      if (gpu > 0) ms = gpu; // a driver that writes zeros: keep the wall time
    }
    this.own += ms;
    return ms;
  }
}

/**
 * Every GPU call of a tune sits in error scopes pushed and popped in the same synchronous stretch, so
 * that its errors never reach the backend's uncaptured-error handler (and the backend's errors never
 * land in its scopes).
 */
function scoped<T>(d: GPUDevice, f: () => T): { value: T | null; failed: Promise<boolean> } {
  d.pushErrorScope('validation');
  d.pushErrorScope('out-of-memory');
  d.pushErrorScope('internal');
  let value: T | null = null;
  try { value = f(); } catch { value = null; }
  const errs = [d.popErrorScope(), d.popErrorScope(), d.popErrorScope()];
  return { value, failed: Promise.all(errs).then((es) => es.some((e) => e !== null), () => true) };
}

/**
 * How much faster than the incumbent a challenger must be: 5%, and 15% on software adapters, whose
 * timings swing with whatever else the CPU cores run (on a shared 2-core machine, lavapipe's GPU
 * timestamps of one variant varied 2x between samples; their default is within noise of the best).
 */
const winMargin = (software: boolean): number => (software ? 1.15 : 1.05);

/** Full-size samples of each side when a proxy's winner is confirmed against the incumbent. */
const CONFIRM_SAMPLES = 2;

async function tune(req: TuneRequest, shape: string, budgetMs = TUNE_BUDGET_MS): Promise<TuneReport> {
  const t0 = performance.now();
  const { spec: proxy, rows } = proxySpec(req.spec);
  const variants = req.variants ?? applicableVariants(req.spec, req.opts, req.software);
  const opts: WgslOptions = { ...req.opts, aligned: req.aligned };
  const tried: string[] = [];
  const session = await TuneSession.open(req.device);
  let complete = true;
  interface Cand { v: MatmulVariant; time: () => Promise<number>; ms: number; samples: number }
  const cands: Cand[] = [];
  let confirmed: { incumbent: number; challenger: number } | null = null;
  try {
    const scratch = await session.scratch(proxy);
    if (!scratch) throw new Error('kiln autotune: could not allocate scratch buffers');
    // round 1: compile, warm up, one sample each (until the budget runs out)
    for (const v of variants) {
      if (session.own > budgetMs && cands.length > 0) { complete = false; break; }
      tried.push(matmulVariantKey(v));
      const time = await session.prepare(proxy, opts, v, scratch);
      if (time) cands.push({ v, time, ms: await time(), samples: 1 });
    }
    // rounds 2..4: the three fastest again (interleaved, so a burst of load elsewhere hits them alike)
    const exhaustive = budgetMs === Infinity;
    for (let round = 0; round < (exhaustive ? 6 : 3) && cands.length > 1; round++) {
      if (round > 0 && session.own > budgetMs) { complete = false; break; }
      const top = [...cands].sort((x, y) => x.ms - y.ms).slice(0, exhaustive ? cands.length : 3);
      for (const c of top) { c.ms = Math.min(c.ms, await c.time()); c.samples++; }
    }
  } catch (e) {
    session.close();
    throw e;
  }
  const timings = cands.map((c) => ({ variant: matmulVariantKey(c.v), ms: c.ms }));
  const fastest = cands.reduce<Cand | null>((x, c) => (!x || c.ms < x.ms ? c : x), null);
  // the fastest, unless the incumbent (the first variant: the untuned default, or a resumed tune's
  // choice so far) is within winMargin of it (timing noise should not flip choices); a challenger timed only
  // once (the budget stopped the interleaved re-timing rounds) never displaces it: on a busy machine
  // one sample is noise (measured on lavapipe: single samples picked 8x8 blocks over 4x4 by 25% and
  // more, where the full product then ran at half the speed)
  const incumbent = cands.find((c) => c.v === variants[0]);
  const margin = winMargin(req.software);
  let best = (incumbent && fastest && (incumbent.ms <= fastest.ms * margin || fastest.samples < 2) ? incumbent : fastest)?.v ?? variants[0] ?? defaultMatmul(req.software, workOf(req.spec));
  // A proxy keeps fewer rows of a in cache than the product does: on lavapipe a 128-row proxy of 1024^3
  // timed 8x8 blocks @ 8x8 1.7x faster than 4x4 @ 8x1, which ran the product 20% slower. So a proxy's
  // challenger must also win on the product's own rows (batch 1), timed interleaved with the incumbent.
  try {
    if (incumbent && best !== incumbent.v && rows < (req.spec.kernel as Matmul).m) {
      const full: KernelSpec = { ...req.spec, kernel: { ...(req.spec.kernel as Matmul), batch: (req.spec.kernel as Matmul).batch.map(() => 1) } };
      const scratch = await session.scratch(full);
      const mine = scratch && await session.prepare(full, opts, incumbent.v, scratch);
      const theirs = scratch && await session.prepare(full, opts, best, scratch);
      if (!mine || !theirs) best = incumbent.v;
      else {
        confirmed = { incumbent: Infinity, challenger: Infinity };
        for (let i = 0; i < CONFIRM_SAMPLES; i++) {
          confirmed.incumbent = Math.min(confirmed.incumbent, await mine());
          confirmed.challenger = Math.min(confirmed.challenger, await theirs());
        }
        if (confirmed.challenger * margin >= confirmed.incumbent) best = incumbent.v;
      }
    }
  } finally {
    session.close();
  }
  const report: TuneReport = { shape, chosen: best, timings, proxyRows: rows, totalMs: performance.now() - t0, complete, tried, ...(confirmed && { confirmed }) };
  lastReports = [...lastReports, report];
  return report;
}

/** Times every applicable variant of `spec` without a budget (benchmarks; the cache is not touched). */
export async function timeAllVariants(req: TuneRequest): Promise<TuneReport> {
  const shape = shapeKey(req.spec, req.aligned) ?? 'none';
  await chain;
  return tune(req, shape, Infinity);
}
