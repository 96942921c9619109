// The WGSL launch format: the uniform every kiln shader reads at binding 0, holding each argument's
// element offset into its buffer and the launch's scalar params (as f32 and as i32):
//   struct Launch { off: array<vec4<i32>, A4>, pf: array<vec4<f32>, P4>, pi: array<vec4<i32>, P4> }

/** Bytes of the launch uniform of a kernel with `nargs` arguments and `nparams` params. */
export function uniformLayout(nargs: number, nparams: number): { a4: number; p4: number; bytes: number } {
  const a4 = Math.max(1, Math.ceil(nargs / 4)), p4 = Math.max(1, Math.ceil(nparams / 4));
  return { a4, p4, bytes: 16 * (a4 + 2 * p4) };
}

/**
 * Writes a launch's uniform (argument offsets in elements, then params as f32 and as i32) into the
 * views `i32`/`f32` of one buffer, starting at 4-byte word `at`.
 */
export function packUniform(i32: Int32Array, f32: Float32Array, at: number, nargs: number, nparams: number, offsets: readonly number[], params: readonly number[]): void {
  const { a4, p4 } = uniformLayout(nargs, nparams);
  for (let i = 0; i < nargs; i++) i32[at + i] = offsets[i] ?? 0;
  for (let i = 0; i < nparams; i++) {
    const v = params[i] ?? 0;
    f32[at + 4 * a4 + i] = v;
    i32[at + 4 * (a4 + p4) + i] = Number.isFinite(v) ? Math.trunc(v) | 0 : 0;
  }
}
