// bench/cnn-data.ts: the shared CNN weights and data are deterministic, and `permute` (which gives tfjs
// PyTorch's weights in its own layouts) moves every element where the index arithmetic says.
import { describe, expect, it } from 'vitest';
import { cnnData, permute, CNN_PARAMS } from '../bench/cnn-data.ts';

describe('bench cnn-data', () => {
  it('draws the same arrays from the same seed, in PyTorch shapes and init ranges', () => {
    const a = cnnData(), b = cnnData();
    expect(a.x).toEqual(b.x);
    expect(a.y).toEqual(b.y);
    expect(a.x.length).toBe(64 * 28 * 28);
    expect(Math.min(...a.y)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...a.y)).toBeLessThanOrEqual(9);
    expect(a.params['fc1.weight'].shape).toEqual([128, 9216]);
    for (const n of CNN_PARAMS) {
      const { data, shape } = a.params[n];
      expect(data.length).toBe(shape.reduce((m, d) => m * d, 1));
      const fanIn = n.startsWith('conv1') ? 9 : n.startsWith('conv2') ? 288 : n.startsWith('fc1') ? 9216 : 128;
      expect(data.reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBeLessThanOrEqual(1 / Math.sqrt(fanIn));
      expect(b.params[n].data).toEqual(data);
    }
  });

  it('permute reorders axes: out[i0, i1, i2] = in at the permuted index', () => {
    const shape = [2, 3, 4];
    const data = Float32Array.from({ length: 24 }, (_, i) => i);
    const out = permute(data, shape, [2, 0, 1]); // [4, 2, 3]
    for (let c = 0; c < 4; c++)
      for (let a = 0; a < 2; a++)
        for (let b = 0; b < 3; b++) expect(out[(c * 2 + a) * 3 + b]).toBe(data[(a * 3 + b) * 4 + c]);
    // a 2-D transpose, and the identity
    expect(Array.from(permute(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3], [1, 0]))).toEqual([1, 4, 2, 5, 3, 6]);
    expect(permute(data, shape, [0, 1, 2])).toEqual(data);
  });

  it('permute rejects a list that is not a permutation of the axes', () => {
    expect(() => permute(new Float32Array(6), [2, 3], [0, 0])).toThrow(/permute: \[0,0\] is not a permutation of the 2 axes of shape \[2,3\]/);
    expect(() => permute(new Float32Array(6), [2, 3], [0])).toThrow(/not a permutation/);
  });
});
