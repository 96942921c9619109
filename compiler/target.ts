// A device as the compiler sees it: a plain description (language, limits, codegen choices) that the
// runtime builds once per device and passes down. Compile-time questions (how many buffers may a
// kernel bind, what source does a kernel become) are answered here from the description, never by
// asking a runtime backend object, so the compiler stays below runtime/ (DESIGN.md layers).

import type { KernelSpec } from '../ir/kernel.ts';
import { jsSource } from './codegen/js.ts';
import { wgslSource, type MatmulVariant, type WgslLimits, type WgslOptions } from './codegen/wgsl.ts';

/** The CPU: kernels become JavaScript functions; nothing limits how many arrays one kernel takes. */
export interface JsTarget { readonly language: 'js' }

/** A matmul variant used from `minWork` multiply-adds (m·n·k·batch) up, until a tune picks one. */
export interface MatmulDefault { readonly minWork: number; readonly variant: MatmulVariant }

/** A WebGPU device: its limits and the codegen choices its adapter calls for. */
export interface WgslTarget {
  readonly language: 'wgsl';
  readonly limits: WgslLimits;
  /** codegen options of every kernel on this device (workgroup cap, reduce strategy and tree threshold) */
  readonly options: Omit<WgslOptions, 'limits' | 'alias' | 'aligned' | 'matmul'>;
  /** the untuned matmul variants by size, smallest minWork first (the first entry's minWork is 0) */
  readonly matmul: readonly MatmulDefault[];
}

export type Target = JsTarget | WgslTarget;

/** The most buffers one kernel may bind (one binding per argument on WebGPU); the fuser splits above it. */
export function maxKernelArgs(t: Target): number {
  return t.language === 'js' ? Infinity : t.limits.maxStorageBuffersPerShaderStage;
}

/** Whether long reductions are split into two passes (a GPU wants the parallelism; one CPU loop is best). */
export const splitsReductions = (t: Target): boolean => t.language === 'wgsl';

/** The untuned matmul variant for a product of `work` multiply-adds. */
export function untunedMatmul(table: readonly MatmulDefault[], work: number): MatmulVariant {
  let v = table[0].variant;
  for (const d of table) if (work >= d.minWork) v = d.variant;
  return v;
}

/** Multiply-adds of a matmul spec (0 for other kernels). */
export function workOf(spec: KernelSpec): number {
  const k = spec.kernel;
  return k.kind === 'matmul' ? k.m * k.n * k.k * k.batch.reduce((x, y) => x * y, 1) : 0;
}

/**
 * The source a kernel compiles to on a target, for listings (`lower()`, KILN_DUMP). A matmul is shown
 * in its untuned variant with aligned operands; the autotuner may later launch a faster variant.
 */
export function kernelSource(spec: KernelSpec, t: Target): { language: 'js' | 'wgsl'; source: string } {
  if (t.language === 'js') return { language: 'js', source: jsSource(spec) };
  const matmul = spec.kernel.kind === 'matmul';
  const opts: WgslOptions = { ...t.options, limits: t.limits, aligned: matmul ? spec.args.map(() => true) : undefined, matmul: matmul ? untunedMatmul(t.matmul, workOf(spec)) : undefined };
  return { language: 'wgsl', source: wgslSource(spec, opts).code };
}
