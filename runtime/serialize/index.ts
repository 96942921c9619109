// kiln.save / kiln.load / kiln.loadState: tensors and checkpoints to and from files PyTorch reads
// and writes. kiln writes safetensors (with PyTorch's snake_case names); it reads safetensors and
// torch.save's .pt/.pth archives. A flat state dict is stored as plain safetensors, exactly what
// `safetensors.torch.save_file(model.state_dict(), path)` would write; a nested checkpoint
// (`{ model, optimizer, epoch }`) stores every tensor under its dotted path and the rest of the
// tree, with `{"__tensor__": "<name>"}` in the tensors' places, as JSON in the metadata entry
// `kiln.tree`.

import { fmt } from '../../ir/shape.ts';
import type { DeviceName } from '../device.ts';
import { nodeFs, requireNode } from '../node.ts';
import { Tensor, tensor } from '../tensor.ts';
import type { RawTensor } from './dtypes.ts';
import { fromTorchName, toTorchName } from './names.ts';
import { decodeSafetensors, encodeSafetensors } from './safetensors.ts';
import { readTorch } from './torch.ts';
import { mapTree, type Tree } from './tree.ts';
import { isZip } from './zip.ts';

export { fromTorchName, toTorchName } from './names.ts';
export type { Tree } from './tree.ts';

/** What save() takes and loadState() returns: names to tensors, numbers, strings, arrays, nested objects. */
export type StateTree = { readonly [key: string]: Tree<Tensor> };

/** Where load reads from: a file path (Node) or the file's bytes (anywhere). */
export type Source = string | Uint8Array | ArrayBuffer;

export interface LoadOptions {
  /** Device for the loaded tensors (default: the default device). */
  device?: DeviceName;
}

/** The metadata entry that holds a nested checkpoint's structure. */
export const TREE_KEY = 'kiln.tree';

interface Placeholder { __tensor__: string }
const isPlaceholder = (v: unknown): v is Placeholder =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1 && typeof (v as Placeholder).__tensor__ === 'string';

const isTensor = (v: unknown): v is Tensor => v instanceof Tensor;

/**
 * `await kiln.save(state, path?)`: writes `state` (a state dict or a nested checkpoint) as a
 * safetensors file with PyTorch's names and returns its bytes; with a path (Node only) it also
 * writes the file. In a browser, call it without a path and keep or download the bytes.
 */
export async function save(state: StateTree, path?: string): Promise<Uint8Array> {
  if (state === null || typeof state !== 'object' || Array.isArray(state) || state instanceof Tensor) {
    throw new Error(`save: expected an object of named tensors (e.g. model.stateDict()), got ${state === null ? 'null' : Array.isArray(state) ? 'an array' : typeof state}`);
  }
  const tensors: [string, Tensor][] = [];
  const names = new Set<string>();
  const skeleton = mapTree(state, isTensor, (t, p): Tree<never> => {
    const name = p.join('.');
    if (names.has(name)) throw new Error(`save: two tensors would both be stored as '${name}'`);
    names.add(name);
    tensors.push([name, t]);
    return { __tensor__: name };
  }, toTorchName, 'save');
  const flat = Object.values(state).every(isTensor);
  const raw: [string, RawTensor][] = [];
  for (const [name, t] of tensors) raw.push([name, { dtype: t.dtype, shape: [...t.shape], data: await t.data() }]);
  const metadata: Record<string, string> = { format: 'pt' };
  if (!flat) metadata[TREE_KEY] = JSON.stringify(skeleton);
  const bytes = encodeSafetensors(raw, metadata);
  if (path !== undefined) {
    if (typeof path !== 'string' || path === '') throw new Error(`save: path must be a non-empty string, got ${JSON.stringify(path)}`);
    requireNode(nodeFs, 'save(state, path)').writeFileSync(path, bytes);
  }
  return bytes;
}

function readSource(src: Source, op: string): { bytes: Uint8Array; what: string } {
  if (src instanceof Uint8Array) return { bytes: src, what: `${op}: bytes` };
  if (src instanceof ArrayBuffer) return { bytes: new Uint8Array(src), what: `${op}: bytes` };
  if (typeof src !== 'string') throw new Error(`${op}: expected a path or the file's bytes (Uint8Array or ArrayBuffer), got ${src === null ? 'null' : typeof src}`);
  const fs = requireNode(nodeFs, `${op}(path)`);
  try {
    return { bytes: fs.readFileSync(src), what: `${op}: ${src}` };
  } catch (e) {
    throw new Error(`${op}: cannot read '${src}': ${(e as Error).message}`);
  }
}

/** The file as a tree of raw tensors, whatever its format. */
function readTree(src: Source, op: string): { tree: Tree<RawTensor>; flat: Map<string, RawTensor>; what: string } {
  const { bytes, what } = readSource(src, op);
  if (isZip(bytes)) {
    const tree = readTorch(bytes, what);
    const flat = new Map<string, RawTensor>();
    mapTree(tree, isRaw, (t, p) => {
      const name = p.join('.');
      if (flat.has(name)) throw new Error(`${what}: two tensors are both at '${name}'`);
      flat.set(name, t);
      return null;
    }, (k) => k, what);
    return { tree, flat, what };
  }
  if (bytes.byteLength >= 2 && bytes[0] === 0x80 && bytes[1] <= 5) {
    throw new Error(`${what}: this is the legacy torch.save format (PyTorch < 1.6 or _use_new_zipfile_serialization=False), which kiln does not read; re-save it with a current torch.save or as safetensors`);
  }
  const { tensors, metadata } = decodeSafetensors(bytes, `${what} (safetensors)`);
  const skeleton = metadata[TREE_KEY];
  if (skeleton === undefined) {
    if (tensors.has('__proto__')) throw new Error(`${what}: a tensor named '__proto__' is not allowed`);
    return { tree: Object.fromEntries(tensors), flat: tensors, what };
  }
  let parsed: unknown;
  try { parsed = JSON.parse(skeleton); } catch (e) { throw new Error(`${what}: the '${TREE_KEY}' metadata is not valid JSON (${(e as Error).message})`); }
  const used = new Set<string>();
  const tree = mapTree(parsed, isPlaceholder, (ph) => {
    const t = tensors.get(ph.__tensor__);
    if (!t) throw new Error(`${what}: the '${TREE_KEY}' metadata names a tensor '${ph.__tensor__}' that the file does not hold`);
    used.add(ph.__tensor__);
    return t;
  }, (k) => k, what);
  const unused = [...tensors.keys()].filter((k) => !used.has(k));
  if (unused.length) throw new Error(`${what}: tensors ${unused.map((k) => `'${k}'`).join(', ')} are missing from the '${TREE_KEY}' metadata`);
  return { tree, flat: tensors, what };
}

const isRaw = (v: unknown): v is RawTensor =>
  v !== null && typeof v === 'object' && ArrayBuffer.isView((v as RawTensor).data) && Array.isArray((v as RawTensor).shape);

function toTensor(t: RawTensor, opts: LoadOptions, what: string): Tensor {
  try {
    return tensor(t.data, { shape: t.shape, dtype: t.dtype, device: opts.device });
  } catch (e) {
    throw new Error(`${what}: cannot make a ${t.dtype} tensor of shape ${fmt(t.shape)}: ${(e as Error).message}`);
  }
}

/**
 * `await kiln.load(pathOrBytes)`: every tensor of a safetensors or torch.save file, by its dotted
 * name in kiln's spelling (`linear_relu_stack.0.weight` -> `linearReluStack.0.weight`). Values that
 * are not tensors (an optimizer's hyper-parameters) are left out; loadState returns them too.
 */
export async function load(src: Source, opts: LoadOptions = {}): Promise<Record<string, Tensor>> {
  const { flat, what } = readTree(src, 'load');
  const out: Record<string, Tensor> = {};
  for (const [name, t] of flat) {
    const k = fromTorchName(name);
    if (k === '__proto__') throw new Error(`${what}: a tensor named '__proto__' is not allowed`);
    if (Object.prototype.hasOwnProperty.call(out, k)) throw new Error(`${what}: two tensors both map to '${k}'`);
    out[k] = toTensor(t, opts, `${what}: '${name}'`);
  }
  return out;
}

/**
 * `await kiln.loadState(pathOrBytes)`: the whole tree a file holds, keys in kiln's spelling: a
 * checkpoint saved as `{ model, optimizer }` by kiln, or by torch.save, comes back as
 * `{ model: { ...tensors }, optimizer: { state, paramGroups } }`. A flat file gives the same as load.
 * `T` is the shape you expect (it is not checked here; loadStateDict checks what it is given).
 */
export async function loadState<T = StateTree>(src: Source, opts: LoadOptions = {}): Promise<T> {
  const { tree, what } = readTree(src, 'loadState');
  const out = mapTree(tree, isRaw, (t, p) => toTensor(t, opts, `${what}: '${p.join('.')}'`), fromTorchName, what);
  if (out === null || typeof out !== 'object' || Array.isArray(out) || out instanceof Tensor) throw new Error(`${what}: the file holds a ${Array.isArray(out) ? 'list' : typeof out}, not an object of named values`);
  return out as T;
}
