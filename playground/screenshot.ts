// Takes docs/playground.png: the playground after a short training run in headless Chromium
// (WebGPU on SwiftShader), as the README shows it.
//
//   npx tsx playground/screenshot.ts [--steps 300] [--out docs/playground.png]

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { startPlayground } from './server.ts';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '300' }, out: { type: 'string', default: 'docs/playground.png' } } });
const executablePath = process.env.KILN_CHROMIUM ?? '/usr/bin/chromium';
const flags = ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-webgpu-adapter=swiftshader',
  '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];

const server = await startPlayground({ port: 0 });
const userDataDir = mkdtempSync(join(tmpdir(), 'kiln-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, { executablePath, headless: true, args: flags, viewport: { width: 1180, height: 1000 } });
try {
  const page = await context.newPage();
  await page.goto(`${server.url}?steps=${values.steps}`);
  await page.waitForFunction(() => (window as unknown as { kilnPlayground: { state: string } }).kilnPlayground.state !== 'running', null, { timeout: 600_000 });
  mkdirSync(dirname(values.out), { recursive: true });
  await page.screenshot({ path: values.out });
  console.log(`wrote ${values.out}: ${await page.locator('#status').textContent()}`);
} finally {
  await context.close();
  await server.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
