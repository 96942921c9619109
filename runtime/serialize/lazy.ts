// kiln.save / load / loadState as the package exports them: a lazy facade over ./index.ts. The file
// formats (safetensors, torch.save's zip and pickle) are imported on first use, so a page that never
// saves or loads never downloads them: in kiln's browser build they are a chunk of their own
// (README.md, "In the browser"). The three functions were async already; nothing else changes.
// tests/bundle.test.ts checks that this module exports what ./index.ts does.

import type { Tensor } from '../tensor.ts';
import type { LoadOptions, Source, StateTree } from './index.ts';

export { fromTorchName, toTorchName } from './names.ts';
export type { LoadOptions, Source, StateTree, Tree } from './index.ts';
/** The metadata entry that holds a nested checkpoint's structure (kept equal to ./index.ts's by tests/bundle.test.ts). */
export const TREE_KEY = 'kiln.tree';

let formats: Promise<typeof import('./index.ts')> | undefined;
const full = (): Promise<typeof import('./index.ts')> => (formats ??= import('./index.ts'));

/** `await kiln.save(state, path?)`: ./index.ts's save (a safetensors file with PyTorch's names; its bytes). */
export async function save(state: StateTree, path?: string): Promise<Uint8Array> {
  return (await full()).save(state, path);
}

/** `await kiln.load(pathOrBytes)`: ./index.ts's load (every tensor of a safetensors or torch.save file). */
export async function load(src: Source, opts?: LoadOptions): Promise<Record<string, Tensor>> {
  return (await full()).load(src, opts);
}

/** `await kiln.loadState(pathOrBytes)`: ./index.ts's loadState (the whole tree a file holds). */
export async function loadState<T = StateTree>(src: Source, opts?: LoadOptions): Promise<T> {
  return (await full()).loadState<T>(src, opts);
}
