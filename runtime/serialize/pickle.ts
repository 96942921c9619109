// A restricted unpickler: a small stack machine for the opcodes (protocols 2 to 5) that Python
// writes for dicts, lists, tuples, numbers, strings and bytes, plus the three hooks a torch.save
// file needs (GLOBAL, REDUCE, BINPERSID). It never executes anything: a GLOBAL is looked up in the
// caller's allow-list and any other name is refused on the spot with an Error naming it
// (`os.system`), and REDUCE only calls the caller's own implementation of an allowed name. Opcodes
// outside the set (INST, OBJ, NEWOBJ, EXT*, the text protocol 0 forms) are refused too.

/** A Python dict (also OrderedDict) with str or int keys, in insertion order. */
export class PyDict {
  readonly map = new Map<string | number, PyValue>();
}
/** A Python tuple (lists are plain arrays). */
export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}
/** An allowed global, by its dotted name (`collections.OrderedDict`). */
export class PyGlobal {
  constructor(readonly name: string) {}
}
/** Objects the caller's hooks build (torch storages and tensors); the machine only passes them around. */
export abstract class PyObject {}

export type PyValue = null | boolean | number | string | Uint8Array | PyValue[] | PyTuple | PyDict | PyGlobal | PyObject;

export interface UnpickleHooks {
  /** Dotted names GLOBAL may load; every other name is refused. */
  allowedGlobals: ReadonlySet<string>;
  /** REDUCE of an allowed global (other than collections.OrderedDict, handled here). */
  call(fn: PyGlobal, args: readonly PyValue[]): PyValue;
  /** BINPERSID: the object a persistent id stands for. */
  persistentLoad(pid: PyValue): PyValue;
}

const MARK = Symbol('mark');
type Slot = PyValue | typeof MARK;

/** Names for the refused opcodes a hostile or exotic pickle is most likely to use. */
const REFUSED: Record<number, string> = {
  0x69: 'INST', 0x6f: 'OBJ', 0x81: 'NEWOBJ', 0x92: 'NEWOBJ_EX', 0x50: 'PERSID', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4',
  0x49: 'INT', 0x4c: 'LONG', 0x46: 'FLOAT', 0x53: 'STRING', 0x56: 'UNICODE', 0x67: 'GET', 0x70: 'PUT',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER', 0x90: 'EMPTY_SET', 0x91: 'ADDITEMS', 0x8f: 'FROZENSET',
};

export function unpickle(bytes: Uint8Array, hooks: UnpickleHooks, what = 'pickle'): PyValue {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: Slot[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  let opAt = 0;
  const fail = (msg: string): never => { throw new Error(`${what}: ${msg} (opcode at byte ${opAt})`); };
  const need = (n: number): number => {
    if (n < 0 || pos + n > bytes.byteLength) fail(`truncated: needs ${n} more bytes at byte ${pos}, the data has ${bytes.byteLength}`);
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = (): number => bytes[need(1)];
  const u32 = (): number => dv.getUint32(need(4), true);
  const u64 = (): number => {
    const v = dv.getBigUint64(need(8), true);
    if (v > BigInt(bytes.byteLength)) fail(`a length of ${v} bytes is beyond the data`);
    return Number(v);
  };
  const utf8 = (n: number): string => {
    const at = need(n);
    try { return new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(at, at + n)); } catch { return fail('a string is not valid UTF-8'); }
  };
  const latin1 = (n: number): string => { const at = need(n); return new TextDecoder('latin1').decode(bytes.subarray(at, at + n)); };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('truncated: a GLOBAL name has no end of line');
    const s = latin1(end - pos);
    pos++;
    return s;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined) fail('stack underflow (corrupt pickle)');
    if (v === MARK) fail('unexpected MARK on the stack (corrupt pickle)');
    return v as PyValue;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail('stack underflow (corrupt pickle)');
    return v as PyValue;
  };
  const popMark = (): PyValue[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) fail('no MARK on the stack (corrupt pickle)');
    const items = stack.splice(i) as PyValue[];
    items.shift();
    return items;
  };
  const global = (module: string, name: string): PyGlobal => {
    const full = `${module}.${name}`;
    if (!hooks.allowedGlobals.has(full)) fail(`refuses the global '${full}': only ${[...hooks.allowedGlobals].join(', ')} may appear in a state dict; nothing was executed`);
    return new PyGlobal(full);
  };
  const key = (k: PyValue): string | number => {
    if (typeof k === 'string' || typeof k === 'number') return k;
    return fail(`a dict key is a ${k === null ? 'None' : k.constructor.name}; only str and int keys are supported`);
  };
  const setItems = (d: PyValue, items: PyValue[]): void => {
    if (!(d instanceof PyDict)) fail('SETITEM(S) on something that is not a dict');
    if (items.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (d as PyDict).map.set(key(items[i]), items[i + 1]);
  };
  const append = (l: PyValue, items: PyValue[]): void => {
    if (!Array.isArray(l)) fail('APPEND(S) on something that is not a list');
    (l as PyValue[]).push(...items);
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i)) fail(`memo entry ${i} was never stored (corrupt pickle)`);
    return memo.get(i)!;
  };
  const int = (v: bigint): number => {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) fail(`the integer ${v} is too large`);
    return Number(v);
  };

  for (;;) {
    opAt = pos;
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: need(8); break; // FRAME (a length hint)
      case 0x2e: { // STOP
        const v = pop();
        return v;
      }
      case 0x28: stack.push(MARK); break;
      case 0x29: stack.push(new PyTuple([])); break;
      case 0x7d: stack.push(new PyDict()); break;
      case 0x5d: stack.push([]); break;
      case 0x85: stack.push(new PyTuple([pop()])); break;
      case 0x86: { const b = pop(), a = pop(); stack.push(new PyTuple([a, b])); break; }
      case 0x87: { const c = pop(), b = pop(), a = pop(); stack.push(new PyTuple([a, b, c])); break; }
      case 0x74: stack.push(new PyTuple(popMark())); break;
      case 0x6c: stack.push(popMark()); break;
      case 0x64: { const d = new PyDict(); setItems(d, popMark()); stack.push(d); break; }
      case 0x61: { const v = pop(); append(top(), [v]); break; }
      case 0x65: { const items = popMark(); append(top(), items); break; }
      case 0x73: { const v = pop(), k = pop(); setItems(top(), [k, v]); break; }
      case 0x75: { const items = popMark(); setItems(top(), items); break; }
      case 0x4e: stack.push(null); break;
      case 0x88: stack.push(true); break;
      case 0x89: stack.push(false); break;
      case 0x4a: stack.push(dv.getInt32(need(4), true)); break;
      case 0x4b: stack.push(u8()); break;
      case 0x4d: stack.push(dv.getUint16(need(2), true)); break;
      case 0x8a: case 0x8b: { // LONG1, LONG4: little-endian two's complement
        const n = op === 0x8a ? u8() : u32();
        if (n > 8) fail(`a ${n}-byte integer is too large`);
        const at = need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]);
        if (n > 0 && bytes[at + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(int(v));
        break;
      }
      case 0x47: stack.push(dv.getFloat64(need(8), false)); break; // BINFLOAT is big-endian
      case 0x58: stack.push(utf8(u32())); break;
      case 0x8c: stack.push(utf8(u8())); break;
      case 0x8d: stack.push(utf8(u64())); break;
      case 0x54: stack.push(latin1(u32())); break;
      case 0x55: stack.push(latin1(u8())); break;
      case 0x42: case 0x43: case 0x8e: { // BINBYTES, SHORT_BINBYTES, BINBYTES8
        const n = op === 0x42 ? u32() : op === 0x43 ? u8() : u64();
        const at = need(n);
        stack.push(bytes.slice(at, at + n));
        break;
      }
      case 0x71: memo.set(u8(), top()); break;
      case 0x72: memo.set(u32(), top()); break;
      case 0x94: memo.set(memo.size, top()); break;
      case 0x68: stack.push(memoGet(u8())); break;
      case 0x6a: stack.push(memoGet(u32())); break;
      case 0x63: { const module = line(); stack.push(global(module, line())); break; }
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x51: stack.push(hooks.persistentLoad(pop())); break;
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        if (!(fn instanceof PyGlobal)) fail('REDUCE of something that is not an allowed global');
        if (!(args instanceof PyTuple)) fail(`REDUCE of ${(fn as PyGlobal).name} with arguments that are not a tuple`);
        const g = fn as PyGlobal, a = (args as PyTuple).items;
        if (g.name === 'collections.OrderedDict') {
          if (a.length !== 0) fail('collections.OrderedDict(...) with arguments is not supported');
          stack.push(new PyDict());
        } else {
          stack.push(hooks.call(g, a));
        }
        break;
      }
      case 0x62: { // BUILD: an OrderedDict's attributes (torch's `_metadata`) are dropped
        const state = pop();
        const obj = top();
        if (!(obj instanceof PyDict) || !(state === null || state instanceof PyDict)) fail('BUILD is only supported for setting attributes of an OrderedDict');
        break;
      }
      case 0x30: pop(); break;
      case 0x31: popMark(); break;
      case 0x32: stack.push(top()); break;
      case 0x69: { // INST: name the class it would instantiate, then refuse
        const module = line();
        global(module, line());
        return fail('the INST opcode (instantiating a class) is refused');
      }
      default:
        return fail(`opcode 0x${op.toString(16).padStart(2, '0')}${REFUSED[op] ? ` (${REFUSED[op]})` : ''} is not supported by kiln's restricted unpickler`);
    }
  }
}
