// PyTorch's own files (torch.save, PyTorch >= 1.6): a zip archive `<name>/data.pkl` (the pickled
// object) + `<name>/data/<key>` (one raw little-endian storage per key) [+ `version`, `byteorder`].
// The pickle goes through the restricted unpickler with exactly the globals a state dict or a
// checkpoint of state dicts uses; tensors are rebuilt from their storage, offset, size and stride
// (so views and non-contiguous tensors come out right), converted by dtypes.ts's rule.

import { numel } from '../../ir/shape.ts';
import { bytesOf, decodeElements, kilnDTypeOf, type FileDType, type RawTensor } from './dtypes.ts';
import { PyDict, PyGlobal, PyObject, PyTuple, unpickle, type PyValue } from './pickle.ts';
import { mapTree, type Tree } from './tree.ts';
import { ZipReader } from './zip.ts';

const STORAGES: Record<string, FileDType> = {
  FloatStorage: 'F32', DoubleStorage: 'F64', HalfStorage: 'F16', BFloat16Storage: 'BF16',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

/** The only globals a torch.save file may name. */
export const TORCH_GLOBALS: ReadonlySet<string> = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  ...Object.keys(STORAGES).map((s) => `torch.${s}`),
]);

class Storage extends PyObject {
  constructor(readonly key: string, readonly dtype: FileDType, readonly numel: number) { super(); }
}

class TorchTensor extends PyObject {
  constructor(readonly storage: Storage, readonly offset: number, readonly shape: number[], readonly stride: number[]) { super(); }
}

const isCount = (v: PyValue): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Reads a torch.save file into a tree of raw tensors and JSON values (dicts become objects, tuples arrays). */
export function readTorch(bytes: Uint8Array, what = 'torch file'): Tree<RawTensor> {
  const fail = (msg: string): never => { throw new Error(`${what}: ${msg}`); };
  const zip = new ZipReader(bytes, what);
  const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) fail(`expected one '<name>/data.pkl' in the archive, found ${pkls.length ? pkls.join(', ') : 'none'} (not a torch.save file?)`);
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  if (zip.entries.has(`${prefix}byteorder`)) {
    const order = new TextDecoder().decode(zip.read(`${prefix}byteorder`)).trim();
    if (order !== 'little') fail(`the storages are '${order}'-endian; kiln reads little-endian files`);
  }

  const storages = new Map<string, Storage>();
  const persistentLoad = (pid: PyValue): PyValue => {
    const t = pid instanceof PyTuple ? pid.items : [];
    const [kind, cls, key, , count] = t;
    if (t.length !== 5 || kind !== 'storage' || !(cls instanceof PyGlobal) || typeof key !== 'string' || !isCount(count)) {
      return fail('a persistent id is not (\'storage\', <storage class>, key, location, numel)');
    }
    const dtype = STORAGES[(cls as PyGlobal).name.replace(/^torch\./, '')];
    if (!dtype) return fail(`'${(cls as PyGlobal).name}' is not a storage class`);
    const old = storages.get(key);
    if (old && (old.dtype !== dtype || old.numel !== count)) fail(`storage '${key}' is declared twice with different types or sizes`);
    const s = old ?? new Storage(key, dtype, count);
    storages.set(key, s);
    return s;
  };
  const call = (fn: PyGlobal, args: readonly PyValue[]): PyValue => {
    if (fn.name === 'torch._utils._rebuild_parameter') {
      if (!(args[0] instanceof TorchTensor)) fail('_rebuild_parameter of something that is not a tensor');
      return args[0];
    }
    if (fn.name === 'torch._utils._rebuild_tensor_v2') {
      const [storage, offset, size, stride] = args;
      if (!(storage instanceof Storage)) return fail('_rebuild_tensor_v2 without a storage');
      const shape = size instanceof PyTuple ? size.items : null;
      const strides = stride instanceof PyTuple ? stride.items : null;
      if (!isCount(offset) || !shape || !strides || shape.length !== strides.length || !shape.every(isCount) || !strides.every(isCount)) {
        return fail(`_rebuild_tensor_v2 of storage '${storage.key}' has a bad offset, size or stride`);
      }
      const sh = shape as number[], st = strides as number[];
      const n = numel(sh);
      const last = (offset as number) + sh.reduce((acc, d, i) => acc + (d - 1) * st[i], 0);
      if (n > 0 && last >= storage.numel) fail(`a tensor of size [${sh.join(', ')}], stride [${st.join(', ')}], offset ${offset} reaches element ${last} of storage '${storage.key}', which has ${storage.numel}`);
      return new TorchTensor(storage, offset as number, sh, st);
    }
    return fail(`calling '${fn.name}' is not supported`);
  };
  const root = unpickle(zip.read(`${prefix}data.pkl`), { allowedGlobals: TORCH_GLOBALS, call, persistentLoad }, `${what}: data.pkl`);

  const decoded = new Map<string, RawTensor['data']>();
  const storageData = (s: Storage): RawTensor['data'] => {
    let d = decoded.get(s.key);
    if (!d) {
      const name = `${prefix}data/${s.key}`;
      if (!zip.entries.has(name)) fail(`storage '${s.key}' has no entry '${name}'`);
      const raw = zip.read(name);
      if (raw.byteLength !== s.numel * bytesOf(s.dtype)) fail(`storage '${s.key}' holds ${raw.byteLength} bytes, ${s.numel} ${s.dtype} elements need ${s.numel * bytesOf(s.dtype)}`);
      d = decodeElements(s.dtype, raw, s.numel, `${what}: storage '${s.key}'`);
      decoded.set(s.key, d);
    }
    return d;
  };
  const materialize = (t: TorchTensor): RawTensor => {
    const src = storageData(t.storage);
    const n = numel(t.shape);
    const out = new (src.constructor as new (n: number) => RawTensor['data'])(n);
    // Row-major walk over the index space, reading through the stored strides.
    const idx = new Array<number>(t.shape.length).fill(0);
    let at = t.offset;
    for (let i = 0; i < n; i++) {
      out[i] = src[at];
      for (let d = t.shape.length - 1; d >= 0; d--) {
        if (++idx[d] < t.shape[d]) { at += t.stride[d]; break; }
        at -= (t.shape[d] - 1) * t.stride[d];
        idx[d] = 0;
      }
    }
    return { dtype: kilnDTypeOf(t.storage.dtype), shape: t.shape, data: out };
  };
  // Python containers to plain ones; then the tree walk turns tensors into raw data. A pickle can
  // share one container many times over (a DAG that expands exponentially): the budget stops it.
  let budget = 1_000_000;
  const plain = (v: PyValue, depth: number): unknown => {
    if (depth > 64) return fail('nested too deeply (corrupt or cyclic data)');
    if (--budget < 0) return fail('holds too many values (corrupt or hostile data)');
    if (v instanceof PyDict) return Object.fromEntries([...v.map].map(([k, x]) => [String(k), plain(x, depth + 1)]));
    if (v instanceof PyTuple) return v.items.map((x) => plain(x, depth + 1));
    if (Array.isArray(v)) return v.map((x) => plain(x, depth + 1));
    if (v instanceof Storage) return fail(`storage '${v.key}' appears outside a tensor`);
    if (v instanceof PyGlobal) return fail(`'${v.name}' appears as a value`);
    if (v instanceof Uint8Array) return fail('bytes values are not supported in a state');
    return v;
  };
  return mapTree(plain(root, 0), (v): v is TorchTensor => v instanceof TorchTensor, materialize, (k) => k, what);
}
