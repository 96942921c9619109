// kiln runs in browsers too: the library must bundle for the browser with no Node built-ins
// (file access is reached through runtime/node.ts at run time, WebGPU through navigator.gpu).
import { build } from 'esbuild';
import { expect, it } from 'vitest';

it('index.ts bundles for the browser without Node built-ins', async () => {
  const result = await build({
    entryPoints: [new URL('../index.ts', import.meta.url).pathname],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    logLevel: 'silent',
  });
  expect(result.errors).toEqual([]);
  const code = result.outputFiles[0].text;
  expect(code).not.toMatch(/from\s*["']node:/);
  expect(code).toContain('navigator');
  expect(code.length).toBeGreaterThan(10_000);
});
