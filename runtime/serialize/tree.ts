// State trees: what save() takes and loadState() returns. A flat state dict (`{ 'fc1.weight': T }`)
// is the simplest tree; a checkpoint nests them (`{ model: model.stateDict(), optimizer:
// opt.stateDict(), epoch: 3 }`), as PyTorch users nest what they pass to torch.save. Leaves are
// tensors or JSON values. Keys are mapped between kiln's and PyTorch's spellings (names.ts) on the
// way out and in.

/** A tree whose leaves are `L` (a Tensor in memory, raw data in a file) or JSON values. */
export type Tree<L> = L | number | string | boolean | null | readonly Tree<L>[] | { readonly [key: string]: Tree<L> };

/** Deeper trees than this are refused (a corrupt or hostile file must not overflow the stack). */
export const MAX_DEPTH = 64;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

/**
 * Rebuilds `tree` with `leaf` applied to every value `isLeaf` accepts and `mapKey` to every object
 * key. JSON values are kept; anything else is an Error naming its path (`where` prefixes it).
 */
export function mapTree<A, B>(
  tree: unknown,
  isLeaf: (v: unknown) => v is A,
  leaf: (v: A, path: string[]) => Tree<B>,
  mapKey: (k: string) => string,
  where: string,
): Tree<B> {
  const walk = (v: unknown, path: string[]): Tree<B> => {
    if (path.length > MAX_DEPTH) throw new Error(`${where}: nested more than ${MAX_DEPTH} levels deep at '${path.slice(0, 4).join('.')}...' (corrupt or cyclic data)`);
    if (isLeaf(v)) return leaf(v, path);
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
    if (typeof v === 'number') return v;
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, String(i)]));
    if (isPlainObject(v)) {
      const out: { [key: string]: Tree<B> } = {};
      for (const [k, x] of Object.entries(v)) {
        const mk = mapKey(k);
        if (mk === '__proto__') throw new Error(`${where}: the key '__proto__' at '${path.join('.')}' is not allowed`);
        if (Object.prototype.hasOwnProperty.call(out, mk)) throw new Error(`${where}: keys '${k}' and another one both map to '${mk}' at '${path.join('.')}'`);
        out[mk] = walk(x, [...path, mk]);
      }
      return out;
    }
    const kind = v === undefined ? 'undefined' : typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
    throw new Error(`${where}: '${path.join('.')}' is ${kind}; a state holds tensors, numbers, strings, booleans, null, arrays and plain objects`);
  };
  return walk(tree, []);
}
