// A view maps an n-d index to a flat position: offset + sum(index[i] * strides[i]).
// Movement primitives are view arithmetic (DESIGN principle 4); codegen folds views into loads.

import { contiguousStrides, numel, type Shape } from './shape.ts';

export interface View {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

export const contiguousView = (shape: Shape, offset = 0): View => ({ shape: [...shape], strides: contiguousStrides(shape), offset });

export function isContiguous(v: View): boolean {
  const s = contiguousStrides(v.shape);
  return v.shape.every((d, i) => d === 1 || v.strides[i] === s[i]);
}

export const permuteView = (v: View, perm: readonly number[]): View => ({
  shape: perm.map((p) => v.shape[p]),
  strides: perm.map((p) => v.strides[p]),
  offset: v.offset,
});

/** Broadcasts to `shape` (same or more dims); broadcast dims get stride 0. */
export function expandView(v: View, shape: Shape): View {
  const lead = shape.length - v.shape.length;
  return {
    shape: [...shape],
    strides: shape.map((d, i) => (i < lead ? 0 : v.shape[i - lead] === d ? v.strides[i - lead] : 0)),
    offset: v.offset,
  };
}

export function sliceView(v: View, starts: readonly number[], steps: readonly number[], shape: Shape): View {
  let offset = v.offset;
  for (let i = 0; i < starts.length; i++) offset += starts[i] * v.strides[i];
  return { shape: [...shape], strides: v.strides.map((s, i) => s * steps[i]), offset };
}

/** Reshape without copying when the strides allow it; null when a copy is needed. */
export function reshapeView(v: View, shape: Shape): View | null {
  if (isContiguous(v)) return contiguousView(shape, v.offset);
  // Drop size-1 dims, then merge runs of old dims that are laid out contiguously with each other.
  const old = v.shape.map((d, i) => [d, v.strides[i]] as const).filter(([d]) => d !== 1);
  const strides: number[] = new Array(shape.length).fill(0);
  let oi = 0;
  for (let ni = 0; ni < shape.length; ) {
    if (shape[ni] === 1) { strides[ni] = 0; ni++; continue; }
    if (oi >= old.length) return null;
    // Take old dims [oi, oj) and new dims [ni, nj) of equal total size.
    let oldSize = old[oi][0], newSize = shape[ni];
    let oj = oi + 1, nj = ni + 1;
    while (oldSize !== newSize) {
      if (oldSize < newSize) { if (oj >= old.length) return null; oldSize *= old[oj++][0]; }
      else { if (nj >= shape.length) return null; newSize *= shape[nj++]; }
    }
    for (let k = oi; k < oj - 1; k++) if (old[k][1] !== old[k + 1][1] * old[k + 1][0]) return null;
    let s = old[oj - 1][1];
    for (let k = nj - 1; k >= ni; k--) { strides[k] = s; s *= shape[k]; }
    oi = oj; ni = nj;
  }
  if (oi !== old.length) return null;
  return { shape: [...shape], strides, offset: v.offset };
}

export const viewNumel = (v: View): number => numel(v.shape);
