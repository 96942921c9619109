// kiln's matmul against the reference WGSL kernels in headless Chromium (WebGPU on SwiftShader where
// there is no GPU), like the Node rows of webgpu.ts: kiln on a first page load (empty IndexedDB: the
// untuned default while the tuner runs) and on a second one (the choice the first persisted), then the
// references. Chromium: KILN_CHROMIUM or /usr/bin/chromium, driven by playwright-core.
//
//   cd bench && ../node_modules/.bin/tsx browser-matmul.ts [n=256]
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { bundlePage, startPlayground, type Asset } from '../playground/server.ts';
import type { KilnBench, PageResult } from './browser-matmul-page.ts';
import type { RefKernel } from './reference-matmul.ts';

const n = Number(process.argv[2] ?? 256);
const executablePath = process.env.KILN_CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(executablePath)) throw new Error(`no Chromium at ${executablePath} (set KILN_CHROMIUM)`);
const flags = ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-webgpu-adapter=swiftshader', '--no-first-run', '--disable-sync'];

const html = '<!doctype html><link rel="icon" href="data:,"><script type="module" src="/bench/page.js"></script>';
const pages = new Map<string, Asset>([
  ['/bench/', { type: 'text/html; charset=utf-8', body: html }],
  ['/bench/page.js', { type: 'text/javascript; charset=utf-8', body: await bundlePage(new URL('./browser-matmul-page.ts', import.meta.url).pathname) }],
]);
const server = await startPlayground({ port: 0, pages });
const userDataDir = mkdtempSync(join(tmpdir(), 'kiln-bench-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, { executablePath, headless: true, args: flags });
const gflops = (ms: number) => (2 * n ** 3) / (ms * 1e6);
const rows: { name: string; r: PageResult }[] = [];
/** Runs kiln's matmul (kind null) or a reference kernel in a fresh page load (the context keeps IndexedDB between loads). */
const inPage = async (kind: RefKernel | null, sync = false): Promise<PageResult> => {
  const p: Page = await context.newPage();
  try {
    await p.goto(server.url + 'bench/');
    await p.waitForFunction(() => 'kilnBench' in window, null, { timeout: 60_000 });
    return await p.evaluate(({ m, k, s }) => {
      const b = (window as unknown as { kilnBench: KilnBench }).kilnBench;
      return k === null ? b.kilnMatmul(m, s) : b.reference(m, k);
    }, { m: n, k: kind, s: sync });
  } finally {
    await p.close();
  }
};
try {
  rows.push({ name: 'kiln, 1st page load (no tuning cache)', r: await inPage(null) });
  rows.push({ name: 'kiln, 2nd page load (IndexedDB cache)', r: await inPage(null) });
  rows.push({ name: 'kiln, 3rd page load, webgpu.sync() per product', r: await inPage(null, true) });
  for (const kind of ['register-blocked', 'register-blocked-8x1', 'tiled', 'register-blocked-subgroup'] as RefKernel[]) rows.push({ name: `reference WGSL ${kind}`, r: await inPage(kind) });
} finally {
  await context.close();
  await server.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
const best = Math.max(...rows.filter((x) => x.name.startsWith('reference')).map((x) => gflops(x.r.medianMs)));
console.log(`WebGPU matmul ${n}³ f32 in Chromium (${rows[0].r.note}), median per product (kiln reads one element back per product unless it says sync; the references wait for the queue):`);
for (const { name, r } of rows) {
  console.log(`  ${name.padEnd(48)} ${r.medianMs.toFixed(2).padStart(8)} ms ${gflops(r.medianMs).toFixed(2).padStart(6)} GFLOP/s ${(100 * gflops(r.medianMs) / best).toFixed(0).padStart(4)}% of the best reference  (${r.samples} samples, first call ${r.firstCallMs.toFixed(0)} ms, max rel err ${r.err.toExponential(1)})`);
}
