// Interop with real PyTorch (1.13, /usr/bin/python3): torch.save files (.pt) and safetensors
// written by PyTorch load in kiln with the same values; safetensors written by kiln load in
// PyTorch (strict load_state_dict, same outputs); optimizer checkpoints continue the same Adam
// trajectory in either direction; a pickle naming a forbidden global is refused and nothing runs;
// corrupt archives give clear errors. Skipped, with the reason printed, where PyTorch is missing
// (see helpers/python.ts).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { python, torchMissing } from './helpers/python.ts';
import { ZipReader } from '../runtime/serialize/zip.ts';

const { nn, optim, F } = kiln;
type Tensor = kiln.Tensor;

const vals = (t: Tensor): number[] => Array.from(t.dataSync(), Number);

/** kiln's model and the same nn.Module in PyTorch (MODEL_PY): attribute names map to each other. */
class Net extends nn.Module {
  linearReluStack = new nn.Sequential(new nn.Linear(4, 3), new nn.ReLU(), new nn.Linear(3, 2));
  declare runningMean: Tensor;
  constructor() {
    super();
    this.registerBuffer('runningMean', kiln.zeros([2]));
  }
  forward(x: Tensor): Tensor { return this.linearReluStack.forward(x).add(this.runningMean); }
}
const MODEL_PY = `
import json, torch, numpy as np, safetensors_io as st
torch.manual_seed(0)
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear_relu_stack = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        self.register_buffer('running_mean', torch.tensor([0.5, -0.25]))
    def forward(self, x):
        return self.linear_relu_stack(x) + self.running_mean
X = torch.linspace(-1, 1, 20).reshape(5, 4)
Y = torch.tensor([0, 1, 1, 0, 1])
def dump(obj):
    print(json.dumps(obj))
`;
const X = kiln.linspace(-1, 1, 20).reshape([5, 4]);
const Y = kiln.tensor(new Int32Array([0, 1, 1, 0, 1]));

function expectClose(got: number[], want: number[], tol: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  const worst = Math.max(0, ...got.map((g, i) => Math.abs(g - want[i]) / (tol + tol * Math.abs(want[i]))));
  if (worst > 1) throw new Error(`${what}: got [${got}], PyTorch [${want}]`);
}

describe.skipIf(torchMissing !== null)('PyTorch interop (torch 1.13 via /usr/bin/python3)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-torch-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const py = (body: string): unknown => JSON.parse(python(MODEL_PY + body, dir).trim().split('\n').pop()!);

  it('a torch.save state dict (.pt) loads into kiln: same values, same outputs', async () => {
    const out = py(`
m = Net()
torch.save(m.state_dict(), 'net.pt')
dump({'sd': {k: v.flatten().tolist() for k, v in m.state_dict().items()}, 'y': m(X).flatten().tolist()})`) as { sd: Record<string, number[]>; y: number[] };
    const sd = await kiln.load(join(dir, 'net.pt'));
    expect(Object.keys(sd)).toEqual(['runningMean', 'linearReluStack.0.weight', 'linearReluStack.0.bias', 'linearReluStack.2.weight', 'linearReluStack.2.bias']);
    for (const [k, v] of Object.entries(out.sd)) expect(vals(sd[kiln.fromTorchName(k)]), k).toEqual(v);
    const net = new Net();
    net.loadStateDict(sd);
    expectClose(vals(net.forward(X)), out.y, 1e-6, 'forward');
  });

  it('every dtype and layout torch.save writes: conversions, views, strides, offsets, parameters', async () => {
    const out = py(`
base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
d = {
  'f64': torch.tensor([0.1, -2.5, 1e-3], dtype=torch.float64), 'f16': torch.tensor([0.5, -65504, 6e-8], dtype=torch.float16),
  'bf16': torch.tensor([1.5, -3e38], dtype=torch.bfloat16), 'i64': torch.tensor([-(2**31), 5, 2**31 - 1]),
  'i32': torch.tensor([1, -2], dtype=torch.int32), 'i16': torch.tensor([-300, 7], dtype=torch.int16),
  'i8': torch.tensor([-128, 127], dtype=torch.int8), 'u8': torch.tensor([0, 255], dtype=torch.uint8),
  'mask': torch.tensor([True, False, True]), 'scalar': torch.tensor(2.25), 'empty': torch.zeros(0, 3),
  'base': base, 'transposed': base.t(), 'sliced': base[1:, ::2], 'column': base[:, 3],
  'param': torch.nn.Parameter(torch.tensor([[1., 2.], [3., 4.]])),
  'nested': {'steps': [torch.tensor(3.), 7], 'betas': (0.9, 0.999), 'name': 'adam', 'none': None},
}
torch.save(d, 'dtypes.pt')
flat = {k: v for k, v in d.items() if torch.is_tensor(v)}
dump({k: {'shape': list(v.shape), 'values': v.detach().double().flatten().tolist()} for k, v in flat.items()})`) as Record<string, { shape: number[]; values: number[] }>;
    const st = await kiln.loadState<Record<string, Tensor> & { nested: { steps: [Tensor, number]; betas: number[]; name: string; none: null } }>(join(dir, 'dtypes.pt'));
    const dtypes: Record<string, string> = { i64: 'int32', i32: 'int32', i16: 'int32', i8: 'int32', u8: 'int32', mask: 'bool' };
    for (const [k, want] of Object.entries(out)) {
      const t = st[k];
      expect(t.dtype, k).toBe(dtypes[k] ?? 'float32');
      expect(t.shape, k).toEqual(want.shape);
      expect(vals(t), k).toEqual(want.values.map((v) => (k === 'mask' ? Number(v) : t.dtype === 'float32' ? Math.fround(v) : v)));
    }
    expect(vals(st.nested.steps[0])).toEqual([3]);
    expect([st.nested.steps[1], st.nested.betas, st.nested.name, st.nested.none]).toEqual([7, [0.9, 0.999], 'adam', null]);
  });

  it("kiln's safetensors load in PyTorch with strict load_state_dict and give kiln's outputs", async () => {
    kiln.manualSeed(5);
    const net = new Net();
    kiln.noGrad(() => net.runningMean.copy_(kiln.tensor([0.125, 2])));
    await kiln.save(net.stateDict(), join(dir, 'kiln.safetensors'));
    await kiln.save({ ints: kiln.tensor(new Int32Array([3, -4])), flags: kiln.tensor([false, true]) }, join(dir, 'extra.safetensors'));
    const out = py(`
m = Net()
res = m.load_state_dict(st.load_flat('kiln.safetensors'), strict=True)
extra = st.load_flat('extra.safetensors')
dump({'y': m(X).flatten().tolist(), 'rm': m.running_mean.tolist(), 'ints': [str(extra['ints'].dtype), extra['ints'].tolist()], 'flags': [str(extra['flags'].dtype), extra['flags'].tolist()]})`) as { y: number[]; rm: number[]; ints: [string, number[]]; flags: [string, boolean[]] };
    expect(out.rm).toEqual([0.125, 2]);
    expectClose(out.y, vals(net.forward(X)), 1e-6, 'PyTorch forward of kiln weights');
    expect(out.ints).toEqual(['torch.int32', [3, -4]]);
    expect(out.flags).toEqual(['torch.bool', [false, true]]);
  });

  it('safetensors written by PyTorch (F32, F64, I64) load in kiln', async () => {
    const out = py(`
m = Net()
sd = dict(m.state_dict()); sd['counts'] = torch.tensor([1, 2, 3]); sd['precise'] = torch.tensor([0.1, 0.2], dtype=torch.float64)
st.save_flat('torch.safetensors', sd)
dump({k: v.double().flatten().tolist() for k, v in sd.items()})`) as Record<string, number[]>;
    const sd = await kiln.load(join(dir, 'torch.safetensors'));
    for (const [k, v] of Object.entries(out)) expect(vals(sd[kiln.fromTorchName(k)]), k).toEqual(v.map(Math.fround));
    expect(sd.counts.dtype).toBe('int32');
  });

  it('an Adam checkpoint continues the same trajectory: torch.save -> kiln and kiln -> PyTorch', async () => {
    // PyTorch trains two steps, saves { model, optimizer }, then takes a third step.
    const torchAfter = py(`
m = Net(); opt = torch.optim.Adam(m.parameters(), lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)
def step():
    opt.zero_grad(); torch.nn.functional.cross_entropy(m(X), Y).backward(); opt.step()
step(); step()
torch.save({'model': m.state_dict(), 'optimizer': opt.state_dict()}, 'adam.pt')
step()
dump([p.flatten().tolist() for p in m.parameters()])`) as number[][];
    const make = () => {
      const net = new Net();
      return { net, opt: new optim.Adam(net.parameters(), { lr: 0.01, betas: [0.8, 0.99], weightDecay: 0.1 }) };
    };
    const step = ({ net, opt }: ReturnType<typeof make>): void => {
      opt.zeroGrad();
      F.crossEntropy(net.forward(X), Y).backward();
      opt.step();
    };
    const a = make();
    const ck = await kiln.loadState<{ model: Record<string, Tensor>; optimizer: kiln.optim.OptimizerStateDict }>(join(dir, 'adam.pt'));
    a.net.loadStateDict(ck.model);
    a.opt.loadStateDict(ck.optimizer);
    step(a);
    a.net.parameters().forEach((p, i) => expectClose(vals(p), torchAfter[i], 1e-5, `param ${i} after kiln's step from PyTorch's checkpoint`));

    // kiln saves its checkpoint; PyTorch loads it into torch.optim.Adam and takes the next step.
    await kiln.save({ model: a.net.stateDict(), optimizer: a.opt.stateDict() }, join(dir, 'adam.safetensors'));
    step(a);
    const fromKiln = py(`
m = Net(); opt = torch.optim.Adam(m.parameters(), lr=0.5, betas=(0.8, 0.99), weight_decay=0.1)
ck = st.load_tree('adam.safetensors')
m.load_state_dict(ck['model']); opt.load_state_dict(ck['optimizer'])
opt.zero_grad(); torch.nn.functional.cross_entropy(m(X), Y).backward(); opt.step()
dump([p.flatten().tolist() for p in m.parameters()] + [opt.param_groups[0]['lr'], float(opt.state[m.linear_relu_stack[0].weight]['step'])])`) as (number[] | number)[];
    expect(fromKiln.slice(-2)).toEqual([0.01, 4]);
    a.net.parameters().forEach((p, i) => expectClose(fromKiln[i] as number[], vals(p), 1e-5, `param ${i} after PyTorch's step from kiln's checkpoint`));
  });

  it('a pickle naming a forbidden global is refused by name and nothing runs', async () => {
    const marker = join(dir, 'pwned');
    python(`
import os, torch
class Evil:
    def __reduce__(self):
        return (os.system, ('touch ${marker}',))
torch.save({'w': torch.ones(2), 'evil': Evil()}, 'evil.pt')`, dir);
    expect(existsSync(marker)).toBe(false);
    await expect(kiln.load(join(dir, 'evil.pt'))).rejects.toThrow(/refuses the global 'posix\.system'.*nothing was executed/);
    expect(existsSync(marker)).toBe(false);
    // a list shared twice at each of 40 levels (2**40 values once expanded) is stopped, not expanded
    python(`
import pickle, zipfile
L = []
for _ in range(40): L = [L, L]
with zipfile.ZipFile('bomb.pt', 'w') as z: z.writestr('bomb/data.pkl', pickle.dumps({'x': L}, protocol=2))`, dir);
    await expect(kiln.load(join(dir, 'bomb.pt'))).rejects.toThrow(/holds too many values/);
  });

  it('truncated, corrupted and compressed archives are clear errors; a wrong shape changes nothing', async () => {
    py(`
import zipfile
m = Net(); torch.save(m.state_dict(), 'ok.pt')
with zipfile.ZipFile('ok.pt') as src, zipfile.ZipFile('deflated.pt', 'w', zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist(): dst.writestr(info.filename, src.read(info.filename))
torch.save({'linear_relu_stack.0.weight': torch.zeros(4, 3)}, 'wrong.pt')
dump(0)`);
    const ok = readFileSync(join(dir, 'ok.pt'));
    await expect(kiln.load(ok.subarray(0, ok.length >> 1))).rejects.toThrow(/no end-of-central-directory record \(truncated or not a zip archive\)/);
    const flipped = Uint8Array.from(ok);
    flipped[new ZipReader(flipped).read('ok/data/0').byteOffset + 5] ^= 0xff; // one byte of the first storage
    await expect(kiln.load(flipped)).rejects.toThrow(/fails its CRC-32 check/);
    await expect(kiln.load(join(dir, 'deflated.pt'))).rejects.toThrow(/is compressed \(method 8\); only stored entries are read/);
    writeFileSync(join(dir, 'junk.pt'), 'not a checkpoint at all');
    await expect(kiln.load(join(dir, 'junk.pt'))).rejects.toThrow(/junk\.pt \(safetensors\): the header length .* goes beyond the end of the file/);
    const net = new Net();
    const before = net.parameters().map(vals);
    const wrong = await kiln.load(join(dir, 'wrong.pt'));
    expect(() => net.loadStateDict(wrong, { strict: false })).toThrow(/size mismatch for linearReluStack\.0\.weight: copying a param with shape \[4, 3\]/);
    expect(net.parameters().map(vals)).toEqual(before);
  });

  it('randomly mutated pickles inside valid archives: each loads or is a clear Error', async () => {
    // Python rewrites a real checkpoint's data.pkl with random byte changes (the zip CRCs stay right,
    // so the unpickler itself sees the damage).
    py(`
import random, zipfile
m = Net(); opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
torch.nn.functional.cross_entropy(m(X), Y).backward(); opt.step()
torch.save({'model': m.state_dict(), 'optimizer': opt.state_dict()}, 'fuzz.pt')
src = zipfile.ZipFile('fuzz.pt')
rng = random.Random(0)
for i in range(150):
    pkl = bytearray(src.read('fuzz/data.pkl'))
    for _ in range(rng.randint(1, 4)):
        pkl[rng.randrange(len(pkl))] = rng.randrange(256)
    if rng.random() < 0.2: pkl = pkl[:rng.randrange(len(pkl))]
    with zipfile.ZipFile(f'fuzz{i}.pt', 'w') as dst:
        for name in src.namelist(): dst.writestr(name, bytes(pkl) if name.endswith('data.pkl') else src.read(name))
dump(0)`);
    let loaded = 0;
    for (let i = 0; i < 150; i++) {
      try {
        await kiln.loadState(join(dir, `fuzz${i}.pt`));
        loaded++;
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        expect((e as Error).message, `fuzz${i}.pt`).toMatch(new RegExp(`^loadState: ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/fuzz${i}\\.pt`));
      }
    }
    expect(loaded).toBeLessThan(150);
  });
});
