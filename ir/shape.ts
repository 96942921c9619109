// Shape arithmetic shared by the shape rules, views and codegen. Errors name the op and the shapes.

export type Shape = readonly number[];

export const numel = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);

export const fmt = (shape: Shape): string => `[${shape.join(', ')}]`;

export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

export const sameShape = (a: Shape, b: Shape): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** NumPy/PyTorch broadcasting of any number of shapes. */
export function broadcastShapes(op: string, ...shapes: Shape[]): number[] {
  const ndim = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(ndim).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = ndim - s.length + i;
      const d = s[i];
      if (d === out[o] || d === 1) continue;
      if (out[o] === 1) out[o] = d;
      else throw new Error(`${op}: shapes ${shapes.map(fmt).join(' and ')} cannot be broadcast together (dimension ${o - ndim}: ${out[o]} vs ${d})`);
    }
  }
  return out;
}

/** Normalises a possibly negative dim into [0, ndim); `extra` allows ndim itself (unsqueeze). */
export function normDim(op: string, dim: number, ndim: number, extra = 0): number {
  const n = ndim + extra;
  const lo = -Math.max(n, 1), hi = Math.max(n, 1) - 1;
  if (typeof dim !== 'number') throw new Error(`${op}: dim must be an integer, got ${typeof dim === 'string' ? `the string '${dim}'` : typeof dim}`);
  if (!Number.isInteger(dim) || dim < lo || dim > hi) {
    throw new Error(`${op}: dimension ${dim} is out of range (expected to be in range of [${lo}, ${hi}])`);
  }
  return dim < 0 ? dim + Math.max(n, 1) : dim;
}

/** Normalises `dim?: number | number[]` into sorted unique axes (all axes when undefined). */
export function normAxes(op: string, dim: number | readonly number[] | undefined, ndim: number): number[] {
  if (dim === undefined) return Array.from({ length: ndim }, (_, i) => i);
  if (typeof dim !== 'number' && !(Array.isArray(dim) && dim.every((d) => typeof d === 'number'))) {
    throw new Error(`${op}: dim must be an integer or an array of integers, got ${typeof dim === 'string' ? `the string '${dim}'` : JSON.stringify(dim) ?? typeof dim}`);
  }
  const dims = typeof dim === 'number' ? [dim] : dim;
  const axes = dims.map((d) => normDim(op, d, ndim));
  if (new Set(axes).size !== axes.length) throw new Error(`${op}: dim ${JSON.stringify(dim)} appears multiple times in the list of dims`);
  // A 0-d tensor accepts dim 0 and -1 (PyTorch) and has no axis to reduce.
  return ndim === 0 ? [] : axes.sort((a, b) => a - b);
}

/** Resolves one -1 in a requested shape against a total size. */
export function inferShape(op: string, from: Shape, requested: readonly number[]): number[] {
  if (!Array.isArray(requested) || requested.some((d) => typeof d !== 'number')) {
    throw new Error(`${op}: shape must be an array of integers, got ${JSON.stringify(requested) ?? typeof requested}`);
  }
  const total = numel(from);
  const unknown = requested.filter((d) => d === -1).length;
  if (unknown > 1) throw new Error(`${op}: only one dimension can be inferred (-1) in ${fmt(requested)}`);
  if (requested.some((d) => !Number.isInteger(d) || d < -1)) throw new Error(`${op}: invalid shape ${fmt(requested)}`);
  const known = requested.reduce((a, d) => (d === -1 ? a : a * d), 1);
  const out = requested.map((d) => (d === -1 ? (known === 0 ? 0 : total / known) : d));
  if (numel(out) !== total || out.some((d) => !Number.isInteger(d))) {
    throw new Error(`${op}: shape ${fmt(requested)} is invalid for input of size ${total} (shape ${fmt(from)})`);
  }
  return out;
}
