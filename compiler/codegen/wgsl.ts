// WGSL codegen: one compute shader per kernel spec, with the same semantics as the JavaScript codegen
// (js.ts). Sizes and strides are baked in as constants; what changes from launch to launch (each
// argument's element offset into its buffer, and the launch's scalar params) comes in a uniform, so
// eager slicing reuses the shader.
//
// Layout of every shader:
//   @binding(0)      var<uniform> U: { off: array<vec4<i32>, A4>, pf: array<vec4<f32>, P4>, pi: array<vec4<i32>, P4> }
//                    off[i/4][i%4] = element offset of argument i; pf/pi = param i as f32 and as i32.
//   @binding(1 + k)  var<storage, read|read_write> b<arg>: array<f32 | i32> for each buffer the kernel uses.
// Storage types: float32 -> f32, int32 -> i32, bool -> i32 holding 0/1 (so bool<->int32 casts are free
// and a bool value is the same 0/1 number it is in js.ts). Every expression value has the WGSL type of
// its dtype (f32 or i32). When two arguments are bound to the same buffer (an in-place write through a
// view of an input), `opts.alias` maps them to one binding: WebGPU forbids binding one buffer both
// read-only and writable in a dispatch.
//
// Files: this one assembles a shader; scalar spellings and the helper functions are in spelling-wgsl.ts,
// expressions are emitted by emit.ts, each strategy below has a file in wgsl/ (map, reduce, matmul,
// indexed: gather/scatterAdd), wgsl/common.ts holds what they share and wgsl/launch.ts the uniform.
//
// Kernel strategies:
//   map        one invocation per output element; past `maxWorkgroups` workgroups (default 4096)
//              each invocation loops over several elements (grid-stride); without a cap, a 2-D grid of
//              workgroups past 65535 groups.
//   reduce     a serial loop per output element (float sums in 64-element partial sums) when the
//              reduced extent is small or there are many outputs; otherwise one workgroup per output
//              element: strided partials, then a tree in workgroup memory (sum / NaN-propagating max /
//              first-position argmax), for fewer than `treeMaxOutputs` outputs (default 16384).
//   matmul     variants (MatmulVariant, picked per adapter and shape by runtime/webgpu/autotune.ts):
//              register blocking, each invocation computing a bm x bn block (default 4x4, 8x8
//              invocations per workgroup, no workgroup memory), or a workgroup-memory tiled kernel
//              (real GPUs), or register blocking whose a values one subgroup loads together, each
//              lane one k step, and broadcasts (software adapters: lavapipe loads every value lane by
//              lane). Float operands whose layout allows it are read as vec4s: a along k (k % 4 == 0) or
//              along m (a transposed a), b along n or along k (a transposed b; k % 4 == 0); every base
//              offset must be a multiple of 4. The epilogue runs once per element in a loop over the
//              block (not unrolled: compile time). Every variant sums in increasing k order, one product
//              at a time.
//   conv       an implicit GEMM (wgsl/conv.ts): per group, 32 x 32 output tiles of [Og, N * P], 16-deep slices
//              of the weight and of the never-stored unfolded input staged in workgroup memory, 4 x 4 blocks
//              per invocation, the epilogue per element; on software adapters (convLanes) 8 x 4 blocks in
//              one subgroup per workgroup sharing the weight's loads, as the matmul's lanes variant.
//   gather     one invocation per output element.
//   scatterAdd deterministic, no atomics: one invocation per OUTPUT element, looping over the source
//              positions along the axis that could land on it, in increasing order (so the float32
//              rounding sequence equals js.ts's). Elements of the output buffer outside the output view
//              are not zeroed (js.ts zero-fills the whole buffer from the offset).
// Constants are `let`s, never WGSL const-expressions (those fail shader creation on overflow).
// Which options an adapter gets (workgroup cap, tree threshold, matmul variant) is tuning policy: the
// autotuner's (runtime/webgpu/autotune.ts), passed in through the device's description; the defaults
// here are for a GPU.

import { unreachable, type Kernel, type KernelSpec } from '../../ir/kernel.ts';
import { PRELUDE, wtype } from './spelling-wgsl.ts';

/** The prelude's helper functions by name (each starts with `fn k_<name>(` at the start of a line). */
const HELPERS: ReadonlyMap<string, string> = new Map(
  PRELUDE.split(/\n(?=fn k_)/).map((f) => f.trim()).filter((f) => f.startsWith('fn k_')).map((f) => [/^fn (k_\w+)/.exec(f)![1], f]),
);

/**
 * The helpers `text` calls, and those they call, in prelude order: every shader used to carry all of
 * them (~2.5 KiB), most of its source for small kernels (the MLP step's 23 shaders: 83 KiB, 57 of it
 * helpers); fewer bytes to parse and validate on the first call.
 */
function preludeFor(text: string): string[] {
  const used = new Set<string>();
  const visit = (src: string): void => {
    for (const m of src.matchAll(/\b(k_\w+)\(/g)) {
      const f = HELPERS.get(m[1]);
      if (f && !used.has(m[1])) { used.add(m[1]); visit(f); }
    }
  };
  visit(text);
  return [...HELPERS].filter(([name]) => used.has(name)).map(([, f]) => f);
}
import { Args, DEFAULT_LIMITS, indent, type Body, type WgslBinding, type WgslLimits } from './wgsl/common.ts';
import { convKernel } from './wgsl/conv.ts';
import { gatherKernel, scatterAddKernel } from './wgsl/indexed.ts';
import { uniformLayout } from './wgsl/launch.ts';
import { mapKernel } from './wgsl/map.ts';
import { DEFAULT_MATMUL, matmulKernel, type MatmulVariant } from './wgsl/matmul.ts';
import { reduceKernel } from './wgsl/reduce.ts';

export { wtype, type WType } from './spelling-wgsl.ts';
export { DEFAULT_LIMITS, type WgslBinding, type WgslLimits } from './wgsl/common.ts';
export { packUniform, uniformLayout } from './wgsl/launch.ts';
export { DEFAULT_MATMUL, matmulVariantFits, matmulVariantKey, subgroupLanes, type MatmulVariant } from './wgsl/matmul.ts';

export interface WgslOptions {
  limits?: Partial<WgslLimits>;
  /** alias[i] = the lowest argument index bound to the same buffer as argument i (absent: no sharing) */
  alias?: readonly number[];
  /** aligned[i]: argument i's launch offset is a multiple of 4 elements (lets matmul use vec4 loads) */
  aligned?: readonly boolean[];
  /**
   * At most this many workgroups for one-invocation-per-element kernels (map, gather, scatterAdd, small
   * reductions); each invocation then loops over several elements (default 4096).
   */
  maxWorkgroups?: number;
  /** reduce strategy: 'auto' (by size), or force one (tests, tuning) */
  reduce?: 'auto' | 'serial' | 'tree';
  /** 'auto' reductions use a workgroup tree per output only below this many outputs (default 16384) */
  treeMaxOutputs?: number;
  /** the matmul variant (default DEFAULT_MATMUL); an autotuner picks one per adapter and shape */
  matmul?: MatmulVariant;
  /**
   * Convolutions in subgroup rounds of this many lanes instead of workgroup-memory tiles (software
   * adapters; wgsl/conv.ts), where the device's subgroups hold that many; 0 or absent: tiles.
   */
  convLanes?: number;
}

export interface WgslKernel {
  name: string;
  code: string;
  workgroups: [number, number, number];
  /** storage bindings (binding 0 is always the uniform) */
  bindings: WgslBinding[];
  /** bytes of the uniform (see packUniform) */
  uniformBytes: number;
}

/** The shader body of one kernel, by strategy. */
function kernelBody(k: Kernel, args: Args, lim: WgslLimits, name: string, cap: number, opts: WgslOptions): Body {
  switch (k.kind) {
    case 'map': return mapKernel(k, args, lim, name, cap);
    case 'reduce': return reduceKernel(k, args, lim, name, cap, opts.reduce ?? 'auto', opts.treeMaxOutputs ?? 16384);
    case 'matmul': return matmulKernel(k, args, lim, name, opts.matmul ?? DEFAULT_MATMUL);
    case 'gather': return gatherKernel(k, args, lim, name, cap);
    case 'scatterAdd': return scatterAddKernel(k, args, lim, name, cap);
    case 'conv': return convKernel(k, args, lim, name, opts.convLanes ?? 0);
    default: return unreachable(k, 'kernel');
  }
}

/** The WGSL compute shader of one kernel spec. Throws an Error naming the kernel when it cannot fit the device. */
export function wgslSource(spec: KernelSpec, opts: WgslOptions = {}): WgslKernel {
  const lim: WgslLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const args = new Args(spec, opts.alias, opts.aligned);
  const k = spec.kernel;
  const cap = Math.max(1, opts.maxWorkgroups ?? 4096);
  const body = kernelBody(k, args, lim, spec.name, cap, opts);
  const bindings = args.bindings();
  if (bindings.length > lim.maxStorageBuffersPerShaderStage) {
    throw new Error(`kiln: WebGPU kernel '${spec.name}' needs ${bindings.length} storage buffers, but this device allows ${lim.maxStorageBuffersPerShaderStage} per shader stage (maxStorageBuffersPerShaderStage); the kernel must be split`);
  }
  const { a4, p4, bytes } = uniformLayout(spec.args.length, spec.params);
  const wg = typeof body.wg === 'number' ? [body.wg, 1] : body.wg;
  if (wg[0] * wg[1] > lim.maxComputeInvocationsPerWorkgroup) {
    throw new Error(`kiln: WebGPU kernel '${spec.name}' needs ${wg[0] * wg[1]} invocations per workgroup, but this device allows ${lim.maxComputeInvocationsPerWorkgroup}`);
  }
  const offLines = [...args.offs].sort((x, y) => x - y).map((i) => `let ofs${i} = U.off[${i >> 2}][${i & 3}];`);
  const mainLines = [...offLines, ...body.main];
  const code = [
    `// kiln kernel ${spec.name} (${k.kind})`,
    ...(body.subgroups ? ['enable subgroups;'] : []),
    `struct Launch { off: array<vec4<i32>, ${a4}>, pf: array<vec4<f32>, ${p4}>, pi: array<vec4<i32>, ${p4}> };`,
    `@group(0) @binding(0) var<uniform> U: Launch;`,
    ...bindings.map((b) => `@group(0) @binding(${b.binding}) var<storage, ${b.access}> b${b.arg}: array<${b.vec4 ? `vec4<${wtype(spec.args[b.arg].dtype)}>` : wtype(spec.args[b.arg].dtype)}>;`),
    ...body.decls,
    ...preludeFor([...body.decls, ...mainLines].join('\n')),
    `@compute @workgroup_size(${wg[0]}, ${wg[1]})`,
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(global_invocation_id) gid: vec3<u32>${body.subgroups ? ', @builtin(subgroup_invocation_id) sgl: u32' : ''}) {`,
    ...indent(mainLines),
    '}',
    '',
  ].join('\n');
  return { name: spec.name, code, workgroups: body.workgroups, bindings, uniformBytes: bytes };
}
