// kiln's public API (API.md). Re-exports only.
export * from './runtime/index.ts';
export * as nn from './nn/index.ts';
export * as F from './nn/functional.ts';
export * as optim from './optim/index.ts';
export * as webgpu from './runtime/webgpu/index.ts';
export { compile, TraceError, type CompileOptions, type CompiledFunction, type Lowered } from './jit/compile.ts';
export * as data from './data/index.ts';
export { save, load, loadState, toTorchName, fromTorchName, type StateTree, type Source, type LoadOptions } from './runtime/serialize/index.ts';
