// kiln's browser build: ES modules with code splitting (esbuild). `dist/kiln.js` is the module a page
// imports; what a page needs only later -- the WebGPU backend (on webgpu.init()), the compiler (on a
// compiled function's first call), the file formats (on save/load), the ONNX exporter, gradcheck, the
// data readers with the IDX parser (data.idx, data.mnist({ source })) -- are dynamic import()s behind
// small lazy facades (runtime/webgpu/lazy.ts, jit/lazy.ts, runtime/serialize/lazy.ts, onnx/lazy.ts,
// runtime/autograd-api.ts, data/index.ts), and so chunks of their own, fetched on first use. Code
// that two of them share is a shared chunk. The platform is 'browser', so package.json's "imports"
// take their browser side: the thread pool's workers load on the pool's first use (Node imports
// them statically), and data.mnist() without a source, which needs Node, is a clear error.
// acorn stays out entirely (jit/source.ts imports it by a variable name; a page maps it).
//
//   npm run build                 # writes dist/ and prints every chunk's size
//
// The playground (playground/server.ts) and tests/bundle.test.ts build with the same function.

import { gzipSync } from 'node:zlib';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Metafile } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Every file of the build names itself, when it loads, in the set of jit/bundle-files.ts (this key):
 * kiln's code is split over several files, and a stack frame in any of them is kiln's, never the user's line.
 */
const BUNDLE_FILES_KEY = 'kiln.bundleFiles';
const banner = `(globalThis[Symbol.for(${JSON.stringify(BUNDLE_FILES_KEY)})]??=new Set).add(import.meta.url);`; // minified, as the rest

export interface Chunk {
  /** file name in the output folder: kiln.js, or kiln-<name>-<hash>.js */
  name: string;
  /** the module a dynamic import() loads with this file (e.g. 'runtime/webgpu/index.ts'); undefined for shared chunks */
  entryPoint?: string;
  text: string;
  bytes: number;
  gzipBytes: number;
  /** files this one imports statically (loaded with it) and dynamically (loaded on first use) */
  imports: string[];
  dynamicImports: string[];
  /** kiln's source files in it, relative to the repository root, and the bytes each contributes */
  inputs: Record<string, number>;
}

export interface KilnBuild {
  /** by file name; the entry is 'kiln.js' */
  chunks: Map<string, Chunk>;
  /** the entry and every chunk it imports statically: what a page loads before kiln's first line runs */
  atLoad: string[];
  metafile: Metafile;
}

export interface BuildOptions {
  /** default true */
  minify?: boolean;
}

/** Builds kiln for the browser in memory. */
export async function buildKiln(options: BuildOptions = {}): Promise<KilnBuild> {
  const outdir = join(root, 'dist');
  const result = await build({
    absWorkingDir: root,
    entryPoints: { kiln: 'index.ts' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    minify: options.minify ?? true,
    outdir,
    chunkNames: 'kiln-[name]-[hash]',
    banner: { js: banner },
    metafile: true,
    write: false,
    logLevel: 'silent',
  });
  const base = (p: string): string => p.slice(p.lastIndexOf('/') + 1);
  const texts = new Map(result.outputFiles.map((f) => [base(f.path), f.text]));
  const chunks = new Map<string, Chunk>();
  for (const [path, out] of Object.entries(result.metafile.outputs)) {
    const name = base(path);
    const text = texts.get(name);
    if (text === undefined) continue; // a source map or the like: none are made
    chunks.set(name, {
      name, entryPoint: out.entryPoint, text, bytes: Buffer.byteLength(text), gzipBytes: gzipSync(text).byteLength,
      imports: out.imports.filter((i) => i.kind === 'import-statement' && !i.external).map((i) => base(i.path)),
      dynamicImports: out.imports.filter((i) => i.kind === 'dynamic-import' && !i.external).map((i) => base(i.path)),
      inputs: Object.fromEntries(Object.entries(out.inputs).map(([f, v]) => [f, v.bytesInOutput])),
    });
  }
  if (!chunks.has('kiln.js')) throw new Error('build: esbuild wrote no kiln.js');
  return { chunks, atLoad: staticClosure(chunks, 'kiln.js'), metafile: result.metafile };
}

/** `from` and every chunk it reaches through static imports. */
export function staticClosure(chunks: ReadonlyMap<string, Chunk>, from: string): string[] {
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    for (const i of chunks.get(name)?.imports ?? []) visit(i);
  };
  visit(from);
  return [...seen];
}

/** The file a dynamic import() of `source` (a path from the repository root) loads. */
export function chunkFor(chunks: ReadonlyMap<string, Chunk>, source: string): string {
  const c = [...chunks.values()].find((c) => c.entryPoint === source);
  if (!c) throw new Error(`build: no chunk is loaded by an import() of ${source}`);
  return c.name;
}

/** Bytes of these chunks together. */
export const totalBytes = (chunks: ReadonlyMap<string, Chunk>, names: Iterable<string>): number =>
  [...names].reduce((s, n) => s + (chunks.get(n)?.bytes ?? 0), 0);

/** What each chunk holds, for the table `npm run build` prints: its largest source folders. */
function summary(c: Chunk): string {
  const dirs = new Map<string, number>();
  for (const [f, b] of Object.entries(c.inputs)) {
    const d = f.includes('/') ? f.slice(0, f.lastIndexOf('/')) : f;
    dirs.set(d, (dirs.get(d) ?? 0) + b);
  }
  return [...dirs].filter(([, b]) => b > 0).sort((a, b) => b[1] - a[1]).slice(0, 4).map(([d, b]) => `${d} ${(b / 1000).toFixed(1)}k`).join(', ');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const kiln = await buildKiln();
  const dist = join(root, 'dist');
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(dist, { recursive: true });
  for (const c of kiln.chunks.values()) writeFileSync(join(dist, c.name), c.text);
  const kb = (n: number): string => `${(n / 1000).toFixed(1)} kB`;
  const atLoad = new Set(kiln.atLoad);
  for (const c of [...kiln.chunks.values()].sort((a, b) => Number(atLoad.has(b.name)) - Number(atLoad.has(a.name)) || b.bytes - a.bytes)) {
    console.log(`${atLoad.has(c.name) ? 'at load ' : 'on use  '} dist/${c.name.padEnd(32)} ${kb(c.bytes).padStart(9)} ${kb(c.gzipBytes).padStart(9)} gzip  ${summary(c)}`);
  }
  console.log(`at load: ${kb(totalBytes(kiln.chunks, atLoad))}; all ${kiln.chunks.size} files: ${kb(totalBytes(kiln.chunks, kiln.chunks.keys()))} (minified)`);
}
