// float64 on the CPU (API.md "Beyond the MLP"): creation, PyTorch's promotion rules, casts, printing,
// reading values, autograd (gradients in their input's dtype), eager == compiled for every primitive
// family, Module.double and optimizers on float64 parameters (against PyTorch float64,
// tests/fixtures/float64-torch.json), saving, and the clear error on WebGPU. The op-by-op numerics
// against PyTorch float64 are in tests/gradcheck.test.ts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { testDevices } from './devices.ts';
import { describeMismatch } from './golden.ts';

type Tensor = kiln.Tensor;
const { nn, optim, F } = kiln;

interface RefTensor { shape: number[]; dtype: string; data: number[] }
interface OptimRef { name: string; expr: string; p: RefTensor; w: RefTensor; steps: RefTensor[] }
const ref = JSON.parse(readFileSync(new URL('./fixtures/float64-torch.json', import.meta.url), 'utf8')) as { optim: OptimRef[] };

const f64 = (data: number[], shape?: number[], requiresGrad = false) => kiln.tensor(Float64Array.from(data), { shape: shape ?? [data.length], requiresGrad });
const vals = (t: Tensor | null): number[] => Array.from(t!.dataSync(), Number);

describe('float64: creation and reading [cpu]', () => {
  it('numbers, nested arrays and Float64Array keep every digit; data() is a Float64Array', async () => {
    const a = kiln.tensor([0.1, 1 + 2 ** -40], { dtype: 'float64' });
    expect(a.dtype).toBe('float64');
    const d = await a.data();
    expect(d).toBeInstanceOf(Float64Array);
    expect(Array.from(d)).toEqual([0.1, 1 + 2 ** -40]);
    const b = kiln.tensor(new Float64Array([0.1, 0.2, 0.3, 0.4]), { shape: [2, 2] });
    expect(b.dtype).toBe('float64');
    expect(b.arraySync()).toEqual([[0.1, 0.2], [0.3, 0.4]]);
    expect(kiln.tensor([[1, 2]], { dtype: 'float64' }).index(0, 1).itemSync()).toBe(2);
    // a Float64Array asked to be float32 rounds
    expect(kiln.tensor(new Float64Array([0.1]), { dtype: 'float32' }).dataSync()[0]).toBe(Math.fround(0.1));
  });

  it('zeros, ones, full, arange, linspace, eye, rand, randn, zerosLike take dtype float64', () => {
    for (const t of [kiln.zeros([2], { dtype: 'float64' }), kiln.ones([2], { dtype: 'float64' }), kiln.full([2], 0.1, { dtype: 'float64' }),
      kiln.arange(0, 1, 0.25, { dtype: 'float64' }), kiln.linspace(0, 1, 4, { dtype: 'float64' }), kiln.eye(2, { dtype: 'float64' }),
      kiln.rand([3], { dtype: 'float64' }), kiln.randn([3], { dtype: 'float64' }), kiln.zerosLike(kiln.ones([2], { dtype: 'float64' }))]) {
      expect(t.dtype).toBe('float64');
      expect(t.dataSync()).toBeInstanceOf(Float64Array);
    }
    expect(vals(kiln.full([1], 0.1, { dtype: 'float64' }))).toEqual([0.1]);
    // linspace in float64 is PyTorch's: the last value exactly `end`, and 1/3 steps at full precision
    expect(vals(kiln.linspace(0, 1, 4, { dtype: 'float64' }))[3]).toBe(1);
    expect(vals(kiln.linspace(0, 1, 4, { dtype: 'float64' }))[1]).toBe(1 / 3);
  });

  it('prints dtype=float64 as PyTorch does', () => {
    expect(kiln.tensor([0.5, 2], { dtype: 'float64' }).toString()).toBe('tensor([0.5000, 2.0000], dtype=float64)');
    expect(kiln.tensor([1], { dtype: 'float64', requiresGrad: true }).toString()).toBe('tensor([1.], dtype=float64, requiresGrad=true)');
  });

  it('bad dtypes are clear errors', () => {
    expect(() => kiln.tensor([1], { dtype: 'float16' as 'float32' })).toThrow("tensor: unknown dtype 'float16' (expected one of float32, float64, int32, bool)");
    expect(() => kiln.zeros([1], { dtype: 'double' as 'float32' })).toThrow("full: unknown dtype 'double'");
    expect(() => kiln.rand([2], { dtype: 'int32' })).toThrow('rand: expected a floating point dtype (float32, float64), got int32');
    expect(() => kiln.tensor([1]).to('float16' as 'cpu')).toThrow("unknown device 'float16'");
    expect(() => kiln.tensor([1], { dtype: 'int32' }).requiresGrad_()).toThrow(/only floating point tensors \(float32, float64\) can require gradients, got int32/);
  });
});

describe('float64: promotion as PyTorch [cpu]', () => {
  const d = kiln.tensor([1.5, 2], { dtype: 'float64' });
  const s = kiln.tensor([1.5, 2]);
  const i = kiln.tensor([1, 2], { dtype: 'int32' });
  const b = kiln.tensor([true, false]);
  it('with float32, int32 and bool tensors the result is float64; a number never widens', () => {
    expect(d.add(s).dtype).toBe('float64');
    expect(s.mul(d).dtype).toBe('float64');
    expect(i.sub(d).dtype).toBe('float64');
    expect(d.mul(b).dtype).toBe('float64');
    expect(d.add(0.1).dtype).toBe('float64');
    expect(d.pow(2).dtype).toBe('float64');
    expect(s.add(0.1).dtype).toBe('float32');
    expect(i.add(0.5).dtype).toBe('float32');
    expect(kiln.where(b, s, d).dtype).toBe('float64');
    expect(kiln.where(b, d, 0.5).dtype).toBe('float64');
    expect(s.reshape([1, 2]).matmul(d.reshape([2, 1])).dtype).toBe('float64');
    expect(kiln.cat([d, d]).dtype).toBe('float64');
  });
  it('a number next to float64 keeps its digits; float32 and float64 compare exactly (0.1f != 0.1)', () => {
    expect(vals(kiln.zeros([1], { dtype: 'float64' }).add(0.1))).toEqual([0.1]);
    expect(vals(kiln.tensor([0.1], { dtype: 'float64' }).eq(kiln.tensor([0.1])))).toEqual([0]);
    expect(vals(kiln.tensor([0.5], { dtype: 'float64' }).eq(kiln.tensor([0.5])))).toEqual([1]);
  });
  it('reductions keep float64; argmax is int32; float-only ops on int32 stay float32', () => {
    expect(d.sum().dtype).toBe('float64');
    expect(d.mean().dtype).toBe('float64');
    expect(d.max().dtype).toBe('float64');
    expect(d.softmax(0).dtype).toBe('float64');
    expect(d.argmax().dtype).toBe('int32');
    expect(i.exp().dtype).toBe('float32');
  });
});

describe('float64: casts [cpu]', () => {
  it('double(), float(), to(dtype): float() rounds to float32 and double() widens exactly', () => {
    const x = kiln.tensor([0.1, 1e-50, 3.5], { dtype: 'float64' });
    expect(x.double()).toBe(x);
    expect(x.to('float64')).toBe(x);
    const f = x.float();
    expect(f.dtype).toBe('float32');
    expect(vals(f)).toEqual([Math.fround(0.1), 0, 3.5]);
    expect(vals(f.double())).toEqual([Math.fround(0.1), 0, 3.5]);
    expect(x.to('float32').dtype).toBe('float32');
    expect(vals(x.to('int32'))).toEqual([0, 0, 3]);
    expect(vals(kiln.tensor([1, 2], { dtype: 'int32' }).double())).toEqual([1, 2]);
    expect(x.to('cpu')).toBe(x);
  });
  it('a fused float64 -> float32 -> float64 chain rounds where eager code does', async () => {
    const x = kiln.tensor([1, 2, 3], { dtype: 'float64' });
    const fn = (a: Tensor) => a.div(3).float().double().mul(3).sub(a);
    const eager = vals(fn(x));
    expect(eager.some((v) => v !== 0)).toBe(true); // the float32 rounding shows
    expect(vals(await kiln.compile(fn)(x))).toEqual(eager);
  });
});

describe('float64: autograd [cpu]', () => {
  it('gradients are float64 for float64 leaves, float32 for float32 leaves in a float64 computation', () => {
    const x = f64([0.5, -1], [2], true);
    const s = kiln.tensor([2, 3], { requiresGrad: true });
    x.mul(s).exp().sum().backward();
    expect(x.grad!.dtype).toBe('float64');
    expect(s.grad!.dtype).toBe('float32');
    const y = kiln.tensor([1, 2], { requiresGrad: true });
    y.double().mul(f64([0.1, 0.2])).sum().backward();
    expect(y.grad!.dtype).toBe('float32');
    expect(vals(y.grad)).toEqual([Math.fround(0.1), Math.fround(0.2)]);
  });
  it('autograd.grad with createGraph in float64', () => {
    const x = f64([0.3], [1], true);
    const [g] = kiln.autograd.grad(x.pow(3).sum(), x, { createGraph: true });
    expect(g!.dtype).toBe('float64');
    const [gg] = kiln.autograd.grad(g!.sum(), x);
    expect(gg!.dtype).toBe('float64');
  });
});

describe('float64: compiled equals eager for every primitive family [cpu]', () => {
  // values float32 cannot hold (1 + 1e-12), so a float32 path anywhere would show
  const a = () => f64([1 + 1e-12, -0.5, 0.25, 2, -1.75, 0.125], [2, 3], true);
  const b = () => f64([0.5, 1e-13, -2, 0.75, 1.5, -0.25], [3, 2], true);
  const idx = kiln.tensor([[2, 0], [1, 1]], { dtype: 'int32' });
  const program = (x: Tensor, y: Tensor): Tensor[] => {
    const e = x.exp().add(x.abs().sqrt()).mul(x.sin()).sub(x.tanh().div(x.sigmoid())).maximum(x.relu().neg()).where0(x.eq(0.25));
    const r = e.sum(1, true).add(e.max(0)).sub(e.logsumexp(0)).mul(e.mean()).add(e.softmax(1)).add(e.logSoftmax(0));
    const v = r.T.reshape([3, 2]).index([0, 3, 2]).expand([2, 2, 2]).permute([2, 0, 1]).sum(0);
    const m = x.matmul(y).add(v).matmul(y.T).add(x.gather(1, kiln.cat([idx, idx.index(null, [0, 1])], 1)).pow(2));
    const out = kiln.stack([m, x.indexSelect(1, kiln.tensor([2, 0, 2], { dtype: 'int32' })).clamp(-1, 1)]).square().sum();
    out.backward();
    return [out, m, x.grad!, y.grad!];
  };
  for (const fuse of [true, false]) {
    it(`forward, backward and .grad (fuse: ${fuse})`, async () => {
      const eager = program(a(), b());
      const compiled = await kiln.compile(program, { fuse })(a(), b());
      for (const [k, t] of compiled.entries()) {
        expect(t.dtype, `result ${k}`).toBe('float64');
        const msg = describeMismatch(t.dataSync(), vals(eager[k]), { rtol: 1e-13, atol: 1e-14 }, false, t.shape);
        if (msg) throw new Error(`result ${k}: ${msg}`);
      }
    });
  }
});

describe('float64: layers and optimizers [cpu]', () => {
  it('Module.double() converts parameters and grads in place (the same objects), float() back', () => {
    const lin = new nn.Linear(3, 2);
    const w = lin.weight;
    F.mseLoss(lin.forward(kiln.ones([1, 3])), kiln.zeros([1, 2])).backward();
    lin.double();
    expect(lin.weight).toBe(w);
    expect(w.dtype).toBe('float64');
    expect(w.grad!.dtype).toBe('float64');
    expect(lin.forward(kiln.ones([4, 3], { dtype: 'float64' })).dtype).toBe('float64');
    lin.float();
    expect(w.dtype).toBe('float32');
    expect(w.grad!.dtype).toBe('float32');
    expect(lin.to('float64').bias!.dtype).toBe('float64');
  });
  for (const c of ref.optim) {
    it(`${c.name} on float64 parameters, eagerly and compiled, equals PyTorch float64`, async () => {
      for (const compiled of [false, true]) {
        const p = kiln.tensor(Float64Array.from(c.p.data), { requiresGrad: true });
        const w = kiln.tensor(Float64Array.from(c.w.data));
        const opt = new Function('optim', 'p', `return ${c.expr};`)(optim, p) as InstanceType<typeof optim.SGD>;
        const step = () => { opt.zeroGrad(); w.mul(p).mul(p).sum().add(p.sin().sum()).backward(); opt.step(); };
        const run = compiled ? kiln.compile(step) : async () => step();
        for (const expected of c.steps) {
          await run();
          expect(p.dtype).toBe('float64');
          const msg = describeMismatch(p.dataSync(), expected.data, { rtol: 1e-12, atol: 1e-14 }, false);
          if (msg) throw new Error(`${c.name} ${compiled ? 'compiled' : 'eager'}: ${msg}`);
        }
      }
    });
  }
  it('saving writes float64 as F64 (safetensors)', async () => {
    const bytes = await kiln.save({ x: kiln.tensor([0.1, 0.2], { dtype: 'float64' }) });
    const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
    expect(header.x.dtype).toBe('F64');
    const data = new DataView(bytes.buffer, bytes.byteOffset + 8 + headerLen + header.x.data_offsets[0]);
    expect([data.getFloat64(0, true), data.getFloat64(8, true)]).toEqual([0.1, 0.2]);
  });
});

for (const device of await testDevices()) {
  if (device !== 'webgpu') continue;
  describe('float64 on WebGPU is a clear error naming float64 and the CPU [webgpu]', () => {
    const msg = /float64 is not supported on device 'webgpu' \(WGSL has no 64-bit floats\); float64 tensors live on the CPU/;
    it('creation, casts, transfers, compiled steps and Module.double', async () => {
      expect(() => kiln.tensor([1], { dtype: 'float64', device })).toThrow(msg);
      expect(() => kiln.zeros([2], { dtype: 'float64', device })).toThrow(msg);
      expect(() => kiln.randn([2], { dtype: 'float64', device })).toThrow(msg);
      const x = kiln.tensor([1, 2], { device });
      expect(() => x.double()).toThrow(/^double\(\): float64 is not supported/);
      expect(() => x.to('float64')).toThrow(/^to\('float64'\): float64 is not supported/);
      expect(() => kiln.tensor([1], { dtype: 'float64' }).to(device)).toThrow(/^to\('webgpu'\): float64 is not supported/);
      await expect(kiln.tensor([1], { dtype: 'float64' }).toAsync(device)).rejects.toThrow(msg);
      await expect(kiln.compile((a: Tensor) => a.double().sum())(x)).rejects.toThrow(msg);
      const lin = new nn.Linear(2, 2).to(device);
      expect(() => lin.double()).toThrow(/^Module\.double: float64 is not supported/);
      expect(lin.weight.dtype).toBe('float32'); // nothing changed
      expect(lin.bias!.dtype).toBe('float32');
    });
  });
}
