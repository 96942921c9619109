// kiln runs in browsers too: the library must bundle for the browser with no Node built-ins
// (file access is reached through runtime/node.ts at run time, WebGPU through navigator.gpu),
// without acorn (imported only when a TraceError wants an expression: it would be about 45% of
// the minified bundle), and bundled it must still name the user's line, never its own.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, type BuildOptions } from 'esbuild';
import { afterAll, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const options: BuildOptions = { entryPoints: [join(root, 'index.ts')], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent' };

it('index.ts bundles for the browser without Node built-ins', async () => {
  const result = await build(options);
  expect(result.errors).toEqual([]);
  const code = result.outputFiles![0].text;
  expect(code).not.toMatch(/from\s*["']node:/);
  expect(code).toContain('navigator');
  expect(code.length).toBeGreaterThan(10_000);
});

it('the minified bundle leaves acorn out', async () => {
  const result = await build({ ...options, minify: true, metafile: true });
  const inputs = Object.keys(result.metafile!.inputs);
  expect(inputs.some((f) => f.endsWith('source.ts'))).toBe(true); // provenance is in it
  expect(inputs.filter((f) => /(^|\/)acorn\//.test(f))).toEqual([]);
  // and what it would weigh: acorn's own minified size, the share the dynamic import saves
  const acorn = await build({ stdin: { contents: "export { parseExpressionAt } from 'acorn';", resolveDir: root }, bundle: true, format: 'esm', minify: true, write: false, logLevel: 'silent' });
  const kiln = result.outputFiles![0].contents.byteLength, saved = acorn.outputFiles[0].contents.byteLength;
  expect(saved / (kiln + saved)).toBeGreaterThan(0.25);
});

const scratch = mkdtempSync(join(root, 'tests', '.bundle-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

it('bundled, a TraceError names the user file:line and expression (acorn imported then), never the bundle', async () => {
  // The bundle and a user's program beside it, run by plain Node (no test runner in the stack).
  const result = await build({ ...options, outfile: join(scratch, 'kiln.mjs') });
  writeFileSync(join(scratch, 'kiln.mjs'), result.outputFiles![0].contents);
  const user = [
    "import * as kiln from './kiln.mjs';",
    'const step = kiln.compile((t) => {',
    '  if (t.sum().itemSync() > 0) return t.mul(2);',
    '  return t;',
    '});',
    'try { await step(kiln.tensor([1, 2])); } catch (e) { console.log(e.name + ": " + e.message); }',
    'const listed = kiln.compile((t) => t.mul(3).exp());',
    'console.log((await listed.lower(kiln.tensor([1, 2]))).forward.toString());',
  ].join('\n');
  writeFileSync(join(scratch, 'user.mjs'), user);
  const out = execFileSync(process.execPath, ['user.mjs'], { cwd: scratch, encoding: 'utf8' });
  expect(out).toMatch(/^TraceError: itemSync\(\) reads the value .* at user\.mjs:3:\d+ \(t\.sum\(\)\.itemSync\(\) > 0\)/);
  expect(out).toContain('# user.mjs:7  const listed = kiln.compile((t) => t.mul(3).exp());');
  expect(out).not.toContain('kiln.mjs');
});
