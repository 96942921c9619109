// kiln.save / load / loadState without PyTorch: the safetensors bytes kiln writes, names in
// PyTorch's spelling, round trips of state dicts and checkpoints (also from WebGPU tensors),
// every kind of corrupt file giving a clear Error, and the restricted unpickler refusing globals.
// Interop with real PyTorch is in torch-interop.test.ts.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { unpickle } from '../runtime/serialize/pickle.ts';
import { TORCH_GLOBALS } from '../runtime/serialize/torch.ts';
import { crc32 } from '../runtime/serialize/zip.ts';
import { mulberry32 } from '../data/random.ts';

const { nn, optim, F } = kiln;
type Tensor = kiln.Tensor;

const vals = async (t: Tensor): Promise<number[]> => Array.from(await t.data(), Number);

class Net extends nn.Module {
  linearReluStack = new nn.Sequential(new nn.Linear(4, 3), new nn.ReLU(), new nn.Linear(3, 2));
  constructor() {
    super();
    this.registerBuffer('runningMean', kiln.tensor([0.5, -0.25]));
  }
  forward(x: Tensor): Tensor { return this.linearReluStack.forward(x).add(this.runningMean as Tensor); }
  declare runningMean: Tensor;
}

/** The JSON header of a safetensors file. */
function header(bytes: Uint8Array): Record<string, unknown> {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
}

/** A safetensors file from a header object and data bytes. */
function file(head: unknown, data: Uint8Array = new Uint8Array(0), headerText = JSON.stringify(head)): Uint8Array {
  const h = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

async function loadError(bytes: Uint8Array): Promise<string> {
  try {
    await kiln.load(bytes);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('load should have thrown');
}

describe('names: kiln camelCase <-> PyTorch snake_case', () => {
  it('maps each dotted segment, and the two functions are inverses', () => {
    const pairs: [string, string][] = [
      ['linearReluStack.0.weight', 'linear_relu_stack.0.weight'],
      ['bn.runningMean', 'bn.running_mean'],
      ['bn.numBatchesTracked', 'bn.num_batches_tracked'],
      ['state.0.expAvgSq', 'state.0.exp_avg_sq'],
      ['fc1.weight', 'fc1.weight'],
      ['conv2D.bias', 'conv2_d.bias'],
      ['attnQKV', 'attn_q_k_v'],
    ];
    for (const [k, t] of pairs) {
      expect(kiln.toTorchName(k)).toBe(t);
      expect(kiln.fromTorchName(t)).toBe(k);
    }
    // PyTorch names outside the snake_case form pass through both ways
    for (const s of ['W_q', '_private', 'layer_2', 'h.0.attn.c_attn']) {
      expect(kiln.fromTorchName(s)).toBe(s === 'h.0.attn.c_attn' ? 'h.0.attn.cAttn' : s);
      expect(kiln.toTorchName(kiln.fromTorchName(s))).toBe(s);
    }
  });
});

describeEachDevice('save / load', (device) => {
  it('a state dict is plain safetensors with PyTorch names and comes back with kiln names', async () => {
    kiln.manualSeed(0);
    const net = new Net().to(device);
    const bytes = await kiln.save(net.stateDict());
    const h = header(bytes);
    // module by module, own parameters and buffers first, as PyTorch orders a state dict
    expect(Object.keys(h)).toEqual(['__metadata__', 'running_mean', 'linear_relu_stack.0.weight', 'linear_relu_stack.0.bias', 'linear_relu_stack.2.weight', 'linear_relu_stack.2.bias']);
    expect(h['linear_relu_stack.0.weight']).toEqual({ dtype: 'F32', shape: [3, 4], data_offsets: [8, 56] });
    expect(h.__metadata__).toEqual({ format: 'pt' });
    expect((8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))) % 8).toBe(0);

    const loaded = await kiln.load(bytes, { device });
    expect(Object.keys(loaded)).toEqual(['runningMean', 'linearReluStack.0.weight', 'linearReluStack.0.bias', 'linearReluStack.2.weight', 'linearReluStack.2.bias']);
    expect(loaded.runningMean.device).toBe(device);
    kiln.manualSeed(1);
    const other = new Net().to(device);
    other.loadStateDict(loaded);
    const x = kiln.randn([5, 4], { device });
    expect(await vals(other.forward(x))).toEqual(await vals(net.forward(x)));
  });

  it('int32, bool, 0-d and empty tensors keep dtype, shape and values', async () => {
    const state = {
      ints: kiln.tensor(new Int32Array([-2147483648, 0, 7, 2147483647]), { shape: [2, 2], device }),
      flags: kiln.tensor([true, false, true], { device }),
      scalar: kiln.tensor(3.5, { device }),
      empty: kiln.zeros([0, 3], { device }),
    };
    const back = await kiln.load(await kiln.save(state));
    for (const [k, t] of Object.entries(state)) {
      expect(back[k].dtype).toBe(t.dtype);
      expect(back[k].shape).toEqual(t.shape);
      expect(await vals(back[k])).toEqual(await vals(t));
    }
  });
});

describe('checkpoints: model and optimizer in one file', () => {
  it('loadState restores { model, optimizer, epoch } and training continues exactly', async () => {
    const x = kiln.randn([6, 4]), y = kiln.tensor(new Int32Array([0, 1, 1, 0, 1, 0]));
    const train = (net: Net, opt: kiln.optim.Optimizer): void => {
      opt.zeroGrad();
      F.crossEntropy(net.forward(x), y).backward();
      opt.step();
    };
    kiln.manualSeed(3);
    const a = new Net();
    const optA = new optim.Adam(a.parameters(), { lr: 0.01 });
    train(a, optA);
    train(a, optA);
    const bytes = await kiln.save({ model: a.stateDict(), optimizer: optA.stateDict(), epoch: 2, note: 'adam' });
    const meta = header(bytes).__metadata__ as Record<string, string>;
    const tree = JSON.parse(meta['kiln.tree']);
    expect(tree.epoch).toBe(2);
    expect(tree.model['linear_relu_stack.0.weight']).toEqual({ __tensor__: 'model.linear_relu_stack.0.weight' });
    expect(tree.optimizer.param_groups[0]).toEqual({ lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0, amsgrad: false, maximize: false, params: [0, 1, 2, 3] });
    expect(tree.optimizer.state['0'].exp_avg_sq).toEqual({ __tensor__: 'optimizer.state.0.exp_avg_sq' });

    const ck = await kiln.loadState<{ model: Record<string, Tensor>; optimizer: kiln.optim.OptimizerStateDict; epoch: number; note: string }>(bytes);
    expect(ck.epoch).toBe(2);
    expect(ck.note).toBe('adam');
    kiln.manualSeed(4);
    const b = new Net();
    const optB = new optim.Adam(b.parameters(), { lr: 0.5 });
    b.loadStateDict(ck.model);
    optB.loadStateDict(ck.optimizer);
    expect(optB.lr).toBe(0.01);
    expect(await vals(optB.stepCount)).toEqual([2]);
    train(a, optA);
    train(b, optB);
    for (const [i, p] of b.parameters().entries()) expect(await vals(p)).toEqual(await vals(a.parameters()[i]));
    // load() of the same file: every tensor by its dotted kiln name
    expect(Object.keys(await kiln.load(bytes))).toContain('optimizer.state.0.expAvgSq');
  });

  it('a state that does not fit throws naming the problem, and nothing changes', async () => {
    const net = new Net();
    const before = await Promise.all(net.parameters().map(vals));
    const sd = net.stateDict();
    sd['linearReluStack.0.weight'] = kiln.zeros([4, 3]);
    const loaded = await kiln.load(await kiln.save(sd));
    expect(() => net.loadStateDict(loaded)).toThrow(/size mismatch for linearReluStack\.0\.weight.*\[4, 3\].*\[3, 4\]/);
    expect(await Promise.all(net.parameters().map(vals))).toEqual(before);
    await expect(kiln.save({ a: kiln.ones([1]), b: { c: new Date() } } as unknown as kiln.StateTree)).rejects.toThrow(/'b\.c' is Date/);
    await expect(kiln.save({ 'a.b': kiln.ones([1]), a: { b: kiln.ones([1]) } })).rejects.toThrow(/both be stored as 'a\.b'/);
  });
});

describe('corrupt or hostile safetensors give clear errors', () => {
  const f32 = (n: number) => new Uint8Array(4 * n);
  it('lengths, JSON, offsets, shapes and dtypes are all checked', async () => {
    expect(await loadError(new Uint8Array(4))).toMatch(/4 bytes, too short/);
    const big = file({});
    new DataView(big.buffer).setBigUint64(0, 1000n, true);
    expect(await loadError(big)).toMatch(/header length 1000 goes beyond the end of the file \(10 bytes\)/);
    expect(await loadError(file(null, f32(0), '{"a": '))).toMatch(/not valid JSON/);
    expect(await loadError(file([1, 2]))).toMatch(/not a JSON object/);
    expect(await loadError(file({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f32(1)))).toMatch(/tensor 'w': data_offsets \[0, 8\] go beyond the 4 data bytes/);
    expect(await loadError(file({ w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 8] } }, f32(2)))).toMatch(/shape \[2, 3\] of F32 needs 24 bytes, data_offsets \[0, 8\] hold 8/);
    expect(await loadError(file({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32(3)))).toMatch(/'a' \[0, 8\] and 'b' \[4, 12\] overlap/);
    expect(await loadError(file({ w: { dtype: 'Q8', shape: [1], data_offsets: [0, 1] } }, f32(1)))).toMatch(/unknown dtype "Q8" \(kiln reads F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL\)/);
    expect(await loadError(file({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f32(1)))).toMatch(/shape \[-1\] is not a list of non-negative integers/);
    expect(await loadError(file({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, f32(1)))).toMatch(/data_offsets \[4,0\] is not a pair/);
    expect(await loadError(file({ __metadata__: { n: 3 } }))).toMatch(/__metadata__ value for 'n' is a number/);
    expect(await loadError(file(null, f32(1), '{"__proto__": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'))).toMatch(/a tensor named '__proto__' is not allowed/);
    expect(await loadError(file({ __metadata__: { 'kiln.tree': '{"a": {"__tensor__": "zz"}}' } }))).toMatch(/names a tensor 'zz' that the file does not hold/);
    // a real file cut short
    const whole = await kiln.save({ w: kiln.ones([16]) });
    expect(await loadError(whole.subarray(0, whole.length - 10))).toMatch(/go beyond the 54 data bytes \(truncated file\?\)/);
    expect(await loadError(new Uint8Array([0x80, 0x02, 0x8a, 0x0a]))).toMatch(/legacy torch\.save format/);
    await expect(kiln.load('/nonexistent/model.safetensors')).rejects.toThrow(/load: cannot read '\/nonexistent\/model\.safetensors'/);
  });

  it('random corruption of a real checkpoint: each loads or is a clear Error', async () => {
    kiln.manualSeed(0);
    const net = new Net();
    const good = await kiln.save({ model: net.stateDict(), optimizer: new optim.Adam(net.parameters()).stateDict(), epoch: 1 });
    const headerEnd = 8 + Number(new DataView(good.buffer).getBigUint64(0, true));
    const rng = mulberry32(7);
    let errors = 0;
    for (let i = 0; i < 300; i++) {
      const b = Uint8Array.from(good);
      for (let j = 0, k = 1 + Math.floor(rng() * 3); j < k; j++) b[Math.floor(rng() * (rng() < 0.8 ? headerEnd : b.length))] = Math.floor(rng() * 256);
      const bytes = rng() < 0.2 ? b.subarray(0, Math.floor(rng() * b.length)) : b;
      try {
        await kiln.loadState(bytes);
      } catch (e) {
        errors++;
        expect(e).toBeInstanceOf(Error);
        expect((e as Error).message).toMatch(/^loadState: bytes/);
      }
    }
    expect(errors).toBeGreaterThan(100);
  });

  it('I64 and F64 follow the conversion rule: int32 and float32, out-of-range values are errors', async () => {
    const i64 = new Uint8Array(16);
    const dv = new DataView(i64.buffer);
    dv.setBigInt64(0, -5n, true);
    dv.setBigInt64(8, 1n << 40n, true);
    expect(await loadError(file({ steps: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, i64))).toMatch(/tensor 'steps': I64 value 1099511627776 \(element 1\) does not fit in int32/);
    dv.setBigInt64(8, -2147483648n, true);
    const ok = await kiln.load(file({ steps: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, i64));
    expect(ok.steps.dtype).toBe('int32');
    expect(await vals(ok.steps)).toEqual([-5, -2147483648]);
    const f64 = new Uint8Array(16);
    new DataView(f64.buffer).setFloat64(0, 0.1, true);
    new DataView(f64.buffer).setFloat64(8, 1e300, true);
    expect(await loadError(file({ x: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, f64))).toMatch(/F64 value 1e\+300 \(element 1\) is beyond float32's range/);
    new DataView(f64.buffer).setFloat64(8, -Infinity, true);
    const x = (await kiln.load(file({ x: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, f64))).x;
    expect(x.dtype).toBe('float32');
    expect(await vals(x)).toEqual([Math.fround(0.1), -Infinity]);
  });
});

describe('restricted unpickler', () => {
  const hooks = { allowedGlobals: TORCH_GLOBALS, call: () => null, persistentLoad: () => null };
  const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  it('refuses any global outside the allow-list by name, before anything could run', () => {
    // pickle.dumps of os.system('echo hi') via __reduce__, protocol 2
    const evil = bytes('\x80\x02cos\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.');
    expect(() => unpickle(evil, hooks)).toThrow(/refuses the global 'os\.system'.*nothing was executed/);
    expect(() => unpickle(bytes('\x80\x04\x8c\x08builtins\x8c\x04eval\x93.'), hooks)).toThrow(/refuses the global 'builtins\.eval'/);
    expect(() => unpickle(bytes('\x80\x02ccollections\nOrderedDict\n)\x81.'), hooks)).toThrow(/opcode 0x81 \(NEWOBJ\) is not supported/);
    expect(() => unpickle(bytes('\x80\x02X\x10\x00\x00\x00ab'), hooks)).toThrow(/truncated/);
    expect(() => unpickle(bytes('\x80\x02h\x05.'), hooks)).toThrow(/memo entry 5 was never stored/);
  });
  it('reads the containers and numbers a state dict uses', () => {
    const v = unpickle(bytes('\x80\x02}q\x00(X\x01\x00\x00\x00aK\x07X\x01\x00\x00\x00b]q\x01(G?\xb9\x99\x99\x99\x99\x99\x9a\x88NeX\x01\x00\x00\x00c\x8a\x01\xffu.'), hooks);
    expect(JSON.stringify([...(v as { map: Map<string, unknown> }).map])).toBe('[["a",7],["b",[0.1,true,null]],["c",-1]]');
  });
  it('crc32 is the standard one', () => {
    expect(crc32(bytes('123456789'))).toBe(0xcbf43926);
  });
});
