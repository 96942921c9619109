// kiln in a real browser: Debian's Chromium, headless, driven by playwright-core (which never
// downloads a browser), with WebGPU on SwiftShader. The playground server serves kiln's split build
// (scripts/build.ts) and the test pages. Checks: the bundle loads as an ES module, the first module
// and its static imports only, and a training page then loads the WebGPU, compiler and data-reader
// chunks but not the file formats; a compiled step trains on WebGPU with
// Node's CPU losses; the playground trains and draws, and falls back to the CPU with its note where
// the page has no WebGPU; a TraceError and a listing name the user's URL and line.
//
// Chromium: KILN_CHROMIUM or /usr/bin/chromium. Without it the suite is skipped with a message,
// except with KILN_REQUIRE_WEBGPU=1 (CI), where that is a failure.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundlePage, startPlayground, type Asset, type Playground } from '../playground/server.ts';
import { buildKiln, chunkFor, staticClosure, type KilnBuild } from '../scripts/build.ts';
import type { KilnTests } from './browser/page.ts';
import { trainSmall } from './browser/small-mlp.ts';
import type { Tensor } from '../index.ts';

const executablePath = process.env.KILN_CHROMIUM ?? '/usr/bin/chromium';
const required = process.env.KILN_REQUIRE_WEBGPU === '1';
const haveChromium = existsSync(executablePath);
const flags = [
  '--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-webgpu-adapter=swiftshader',
  '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync',
];

if (!haveChromium && !required) {
  console.warn(`tests/browser.test.ts: skipped: no Chromium at ${executablePath} (install Debian's chromium, or set KILN_CHROMIUM)`);
}

/** What the pages put on window: the fixtures (tests/browser/page.ts) and the playground's report. */
interface TestWindow {
  kilnTests: KilnTests;
  kilnPlayground: { state: string; device: string; losses: { loss: number }[]; accuracy?: number; error?: string };
}

describe.skipIf(!haveChromium && !required)('in Chromium (WebGPU on SwiftShader)', () => {
  let server: Playground;
  let context: BrowserContext;
  let userDataDir = '';
  let pageJs = '';
  /** the build the server serves (the same files: esbuild's output is deterministic) */
  let kiln: KilnBuild;
  /** the paths each page requested, in order */
  const requested = new Map<Page, string[]>();
  /** kiln's files among them */
  /** the CPU gemm's chunk and what it imports (package.json's #gemm: fetched as kiln loads) */
  const gemmChunks = (): string[] => staticClosure(kiln.chunks, chunkFor(kiln.chunks, 'runtime/gemm-wasm.ts'));
  const kilnFiles = (p: Page): string[] => [...new Set(requested.get(p)!.filter((u) => /^\/kiln[\w-]*\.js$/.test(u)).map((u) => u.slice(1)))].sort();

  /** A new page whose uncaught errors (returned) and requested paths (`requested`) are recorded. */
  const watchedPage = async (): Promise<{ p: Page; errors: string[] }> => {
    const p = await context.newPage();
    const errors: string[] = [];
    p.on('pageerror', (e) => errors.push(e.message));
    const urls: string[] = [];
    requested.set(p, urls);
    p.on('request', (r) => urls.push(new URL(r.url()).pathname));
    return { p, errors };
  };
  const page = async (path: string, hideWebGPU = false): Promise<Page> => {
    const { p, errors } = await watchedPage();
    // Like a browser without WebGPU: navigator.gpu is undefined.
    if (hideWebGPU) await p.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    await p.goto(server.url + path.replace(/^\//, ''));
    if (path.startsWith('/tests/')) await p.waitForFunction(() => 'kilnTests' in window, null, { timeout: 30_000 });
    expect(errors).toEqual([]);
    return p;
  };

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`KILN_REQUIRE_WEBGPU=1 but there is no Chromium at ${executablePath}: install it (apt-get install chromium) or set KILN_CHROMIUM`);
    const here = new URL('./browser/', import.meta.url).pathname;
    pageJs = await bundlePage(join(here, 'page.ts'));
    const html = '<!doctype html><link rel="icon" href="data:,"><script type="importmap">{ "imports": { "acorn": "/acorn.js" } }</script>' +
      '<script type="module" src="/tests/page.js"></script><p>kiln tests</p>';
    const pages = new Map<string, Asset>([
      ['/tests/', { type: 'text/html; charset=utf-8', body: html }],
      // the same page, cross-origin isolated: shared memory, so kiln's CPU thread pool runs on Web Workers
      ['/tests/isolated/', { type: 'text/html; charset=utf-8', body: html, headers: { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } }],
      ['/tests/page.js', { type: 'text/javascript; charset=utf-8', body: pageJs }],
    ]);
    server = await startPlayground({ port: 0, pages });
    kiln = await buildKiln();
    userDataDir = mkdtempSync(join(tmpdir(), 'kiln-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, { executablePath, headless: true, args: flags });
  });

  afterAll(async () => {
    await context?.close();
    await server?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  });

  it('the bundle loads as an ES module and the page has a WebGPU adapter', async () => {
    const p = await page('/tests/');
    // at load, the first module and its static imports, then the CPU gemm's chunk (fetched as kiln
    // loads, not awaited: wait for the network to settle); WebGPU's chunk comes with available()
    await p.waitForLoadState('networkidle');
    expect(kilnFiles(p)).toEqual([...new Set([...kiln.atLoad, ...gemmChunks()])].sort());
    const got = await p.evaluate(async () => {
      const { kiln } = (window as unknown as TestWindow).kilnTests;
      return { exports: Object.keys(kiln), webgpu: await kiln.webgpu.available(), sum: await kiln.tensor([1, 2, 3]).sum().item() };
    });
    expect(got.exports).toEqual(expect.arrayContaining(['compile', 'tensor', 'nn', 'optim', 'data', 'webgpu', 'TraceError']));
    expect(got.sum).toBe(6);
    expect(got.webgpu).toBe(true);
    await p.close();
  });

  it('cross-origin isolated, split CPU products run on Web Workers once their chunk has loaded, with the bits of one thread', async () => {
    const { p, errors } = await watchedPage();
    // (the pool's shared memory, kept for the check below: its control block counts the jobs published to workers)
    await p.addInitScript(() => {
      const Memory = WebAssembly.Memory;
      const shared: WebAssembly.Memory[] = ((window as unknown as { sharedMemories: WebAssembly.Memory[] }).sharedMemories = []);
      WebAssembly.Memory = function (d: WebAssembly.MemoryDescriptor) {
        const m = new Memory(d);
        if (d.shared) shared.push(m);
        return m;
      } as unknown as typeof WebAssembly.Memory;
    });
    await p.goto(server.url + 'tests/isolated/');
    await p.waitForFunction(() => 'kilnTests' in window, null, { timeout: 30_000 });
    const got = await p.evaluate(async () => {
      const { kiln } = (window as unknown as TestWindow).kilnTests;
      const [mem] = (window as unknown as { sharedMemories: WebAssembly.Memory[] }).sharedMemories;
      kiln.manualSeed(5);
      const a = kiln.randn([128, 300]), b = kiln.randn([300, 512]);
      kiln.setNumThreads(2);
      const jobs = (): number => Atomics.load(new Int32Array(mem.buffer, 0, 1), 0); // the control block's job counter
      const split: Float32Array[] = [];
      // the workers' chunk loads, then they start in the background: until then products run on this thread
      for (let i = 0; i < 200 && jobs() === 0; i++) {
        split.push(a.matmul(b).dataSync() as Float32Array);
        await new Promise((r) => setTimeout(r, 25));
      }
      split.push(a.matmul(b).dataSync() as Float32Array);
      const published = jobs();
      kiln.setNumThreads(1);
      const one = a.matmul(b).dataSync() as Float32Array;
      return { isolated: window.crossOriginIsolated, published, same: split.every((c) => c.every((v, i) => Object.is(v, one[i]))) };
    });
    expect(errors).toEqual([]);
    expect(got).toEqual({ isolated: true, published: expect.any(Number), same: true });
    expect(got.published).toBeGreaterThan(0);
    expect(kilnFiles(p)).toEqual([...new Set([...kiln.atLoad, ...gemmChunks(), chunkFor(kiln.chunks, 'runtime/thread-workers.ts')])].sort());
    await p.close();
  });

  it('a compiled step trains on WebGPU in the page with the losses of Node on the CPU', async () => {
    const p = await page('/tests/');
    const inPage = await p.evaluate(() => (window as unknown as TestWindow).kilnTests.trainSmall('webgpu'));
    const inNode = await trainSmall('cpu');
    expect(inPage).toHaveLength(inNode.length);
    inPage.forEach((l, i) => expect(Math.abs(l - inNode[i])).toBeLessThan(1e-4 + 1e-4 * Math.abs(inNode[i])));
    expect(inNode[inNode.length - 1]).toBeLessThan(inNode[0]); // it learns
    await p.close();
  });

  it('on SwiftShader, products worth tuning launch the subgroup lanes variant and match the CPU on every layout and a k tail', async () => {
    const p = await page('/tests/');
    const got = await p.evaluate(async () => {
      const { kiln, worstRelative } = (window as unknown as TestWindow).kilnTests;
      await kiln.webgpu.init();
      kiln.manualSeed(3);
      const worst: number[] = [];
      // [m, k, n, a transposed, b transposed]: m * k * n >= 2^18 (worth tuning: the untuned default is the lanes variant)
      for (const [m, k, n, ta, tb] of [[64, 70, 72, false, false], [64, 66, 64, false, true], [72, 61, 64, true, false]] as const) {
        const a = kiln.randn(ta ? [k, m] : [m, k]), b = kiln.randn(tb ? [n, k] : [k, n]);
        const f = (x: Tensor, y: Tensor) => (ta ? x.transpose(0, 1) : x).matmul(tb ? y.transpose(0, 1) : y);
        const cpu = (await f(a, b).data()) as Float32Array;
        worst.push(worstRelative(cpu, (await f(a.to('webgpu'), b.to('webgpu')).data()) as Float32Array));
      }
      const listing = await kiln.compile((x: Tensor, y: Tensor) => x.matmul(y)).lower(kiln.randn([64, 64], { device: 'webgpu' }), kiln.randn([64, 64], { device: 'webgpu' }));
      return { worst, subgroups: listing.kernels[0].source.includes('subgroupBroadcast'), min: kiln.webgpu.adapterInfo().subgroupMinSize };
    });
    expect(got.min).toBe(4);
    expect(got.subgroups).toBe(true);
    for (const w of got.worst) expect(w).toBeLessThan(1e-5);
    await p.close();
  });

  it('on SwiftShader, convolutions run in subgroup rounds and match the CPU: forward, input and weight gradients', async () => {
    const p = await page('/tests/');
    const got = await p.evaluate(async () => {
      const { kiln, worstRelative } = (window as unknown as TestWindow).kilnTests;
      await kiln.webgpu.init();
      kiln.manualSeed(4);
      const x0 = kiln.randn([2, 3, 9, 9]), w0 = kiln.randn([10, 3, 3, 3]), b0 = kiln.randn([10]);
      // stride 2 and padding 1: the input gradient is a transposed convolution with gaps (lhsDilation)
      const run = async (device: 'cpu' | 'webgpu') => {
        const [x, w, b] = [x0, w0, b0].map((t) => { const d = t.to(device); d.requiresGrad = true; return d; });
        const y = kiln.F.conv2d(x, w, b, { stride: 2, padding: 1 });
        y.mul(y).sum().backward();
        return Promise.all([y, x.grad!, w.grad!].map(async (t) => (await t.data()) as Float32Array));
      };
      const [cpu, gpu] = [await run('cpu'), await run('webgpu')];
      const worst = cpu.map((c, t) => worstRelative(c, gpu[t]));
      const listing = await kiln.compile((x: Tensor, w: Tensor) => kiln.F.conv2d(x, w)).lower(x0.to('webgpu'), w0.to('webgpu'));
      return { worst, subgroups: listing.kernels[0].source.includes('subgroupBroadcast') };
    });
    expect(got.subgroups).toBe(true);
    for (const w of got.worst) expect(w).toBeLessThan(1e-5);
    await p.close();
  });

  it('a TraceError names the user file:line (a URL) and the expression; listings carry the source lines', async () => {
    const p = await page('/tests/');
    const got = await p.evaluate(() => (window as unknown as TestWindow).kilnTests.traceError());
    const lines = pageJs.split('\n');
    const lineOf = (text: string): number => {
      const hits = lines.flatMap((l, i) => (l.includes(text) ? [i + 1] : []));
      expect(hits).toHaveLength(1);
      return hits[0];
    };
    const file = `${server.url}tests/page.js`;
    expect(got.name).toBe('TraceError');
    expect(got.message).toContain(`itemSync() reads the value of a traced tensor`);
    expect(got.message).toMatch(new RegExp(`at ${file.replace(/[.]/g, '\\.')}:${lineOf('t.sum().itemSync()')}:\\d+ \\(t\\.sum\\(\\)\\.itemSync\\(\\) > 0\\)`));
    expect(got.message).not.toMatch(/kiln[\w-]*\.js/); // none of kiln's files
    const listed = lineOf('t.mul(3).exp()');
    expect(got.listing).toContain(`# ${file}:${listed}  ${lines[listed - 1].trim()}`);
    expect(got.listing).not.toMatch(/kiln[\w-]*\.js/);
    await p.close();
  });

  it('the playground trains on WebGPU, draws the loss and lists the kernels with their source lines', async () => {
    const p = await page('/?steps=8&test=500');
    await p.waitForFunction(() => (window as unknown as TestWindow).kilnPlayground.state !== 'running', null, { timeout: 90_000 });
    const report = await p.evaluate(() => (window as unknown as TestWindow).kilnPlayground);
    expect(report.error).toBeUndefined();
    expect(report).toMatchObject({ state: 'done', device: 'webgpu' });
    expect(report.losses).toHaveLength(8);
    expect(report.losses[7].loss).toBeLessThan(report.losses[0].loss);
    expect(report.accuracy).toBeGreaterThan(0.3); // 8 steps of 64 digits: far above chance (0.1)
    expect(await p.locator('#note').isHidden()).toBe(true);
    expect((await p.locator('#plot polyline').getAttribute('points'))?.split(' ')).toHaveLength(8);
    expect(await p.locator('#accuracy').textContent()).toMatch(/^\d+\.\d%$/);
    const listings = await p.locator('#listings pre').allTextContents();
    expect(listings.some((t) => t.includes('@compute'))).toBe(true);
    expect(listings.some((t) => /app\.js:\d+ {2}const loss = /.test(t))).toBe(true);
    // what a page that trains on WebGPU loads: the first module, then the WebGPU backend, the compiler
    // and the data readers (it reads MNIST from URLs) with what they import -- never the file formats
    const chunks = kiln.chunks;
    const training = new Set([...kiln.atLoad, ...gemmChunks(), ...['runtime/webgpu/index.ts', 'jit/compile.ts', 'data/read.ts'].flatMap((m) => staticClosure(chunks, chunkFor(chunks, m)))]);
    expect(kilnFiles(p)).toEqual([...training].sort());
    await p.close();
  });

  it('a page without WebGPU falls back to the CPU and says so', async () => {
    const p = await page('/?steps=3&test=200', true);
    await p.waitForFunction(() => (window as unknown as TestWindow).kilnPlayground.state !== 'running', null, { timeout: 90_000 });
    const report = await p.evaluate(() => (window as unknown as TestWindow).kilnPlayground);
    expect(report.error).toBeUndefined();
    expect(report).toMatchObject({ state: 'done', device: 'cpu' });
    expect(report.losses).toHaveLength(3);
    expect(await p.locator('#note').isVisible()).toBe(true);
    expect(await p.locator('#note').textContent()).toMatch(/WebGPU is not available in this browser, so kiln trains on the CPU/);
    expect(await p.locator('#device').textContent()).toBe('CPU');
    const listings = await p.locator('#listings pre').allTextContents();
    expect(listings.some((t) => t.includes('function '))).toBe(true); // JavaScript kernels
    await p.close();
  });
});
