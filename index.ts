// kiln's public API (API.md). Re-exports only.
export * from './runtime/index.ts';
export * as nn from './nn/index.ts';
export * as F from './nn/functional.ts';
export * as utils from './utils/index.ts';
export * as plot from './utils/plot.ts';
export * as optim from './optim/index.ts';
export * as webgpu from './runtime/webgpu/lazy.ts';
export { compile, TraceError, type CompileOptions, type CompiledFunction, type Lowered } from './jit/lazy.ts';
export type { StepProfile, KernelProfile } from './jit/compile.ts';
export * as data from './data/index.ts';
export { save, load, loadState, toTorchName, fromTorchName, type StateTree, type Source, type LoadOptions } from './runtime/serialize/lazy.ts';
export * as onnx from './onnx/lazy.ts';
