// The files kiln's code runs from when it is bundled, so that provenance (jit/source.ts) never takes a
// frame in one of them for the user's line. kiln's own build (scripts/build.ts) is several files;
// each adds its URL to this set when it loads (a one-line banner with the same key). A bundler of
// the user's may split kiln too: this module adds the file it lands in, which holds kiln's first
// module (jit/lazy.ts imports it), and jit/source.ts knows its own file.

const KEY = Symbol.for('kiln.bundleFiles');
const urls: Set<string> = ((globalThis as { [key: symbol]: Set<string> | undefined })[KEY] ??= new Set());
urls.add(import.meta.url);

const fileURLToPath = (u: string): string => decodeURIComponent(new URL(u).pathname);
let files = new Set<string>();

/** Whether `file` (a path, or a URL that is not file:) is one of the files kiln runs from. */
export function inBundle(file: string): boolean {
  if (urls.size !== files.size) files = new Set([...urls].map((u) => (u.startsWith('file://') ? fileURLToPath(u) : u)));
  return files.has(file);
}
