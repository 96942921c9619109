// The files kiln's code runs from when it is bundled, so that provenance (jit/source.ts's inBundle)
// never takes a frame in one of them for the user's line. kiln's own build (scripts/build.ts) is
// several files; each adds its URL to this set when it loads (a one-line banner with the same key).
// A bundler of the user's may split kiln too: this module adds the file it lands in, which holds
// kiln's first module (jit/lazy.ts imports it), and jit/source.ts knows its own file.

const KEY = Symbol.for('kiln.bundleFiles');
/** The URLs of the files kiln runs from (file: URLs in Node). */
export const bundleFileUrls: Set<string> = ((globalThis as { [key: symbol]: Set<string> | undefined })[KEY] ??= new Set());
bundleFileUrls.add(import.meta.url);
