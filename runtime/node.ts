// Node's built-in modules when kiln runs in Node, null in a browser. Reached through
// process.getBuiltinModule so that no module of kiln imports `node:*` statically and the library
// bundles for the browser unchanged (file reading, KILN_DUMP and MNIST loading are Node-only).

type Fs = typeof import('node:fs');
type Path = typeof import('node:path');
type NodeModule = typeof import('node:module');
type Url = typeof import('node:url');

interface NodeProcess { getBuiltinModule?: (id: string) => unknown; env: Record<string, string | undefined>; cwd(): string }
const proc = (globalThis as { process?: NodeProcess }).process;

function builtin<T>(id: string): T | null {
  return (proc?.getBuiltinModule?.(id) as T | undefined) ?? null;
}

export const nodeFs = (): Fs | null => builtin<Fs>('node:fs');
export const nodePath = (): Path | null => builtin<Path>('node:path');
export const nodeModule = (): NodeModule | null => builtin<NodeModule>('node:module');
export const nodeUrl = (): Url | null => builtin<Url>('node:url');
export const env = (name: string): string | undefined => proc?.env[name];
export const cwd = (): string => proc?.cwd() ?? '';

/** The built-in, or an error saying that `what` needs Node. */
export function requireNode<T>(get: () => T | null, what: string): T {
  const m = get();
  if (!m) throw new Error(`${what} needs Node.js (its file system); it is not available in a browser`);
  return m;
}
