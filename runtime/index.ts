// The runtime's public surface, for nn/ optim/ data/ and the package index.
export { Tensor, TopK, where, cat, stack, full, matmul, checkIndexRange, type TensorLike, type IndexEntry, type NestedArray, type CreationOptions, type VarOptions, type Dims } from './tensor.ts';
export { tensor, zeros, ones, zerosLike, onesLike, fullLike, arange, linspace, eye, rand, randn, randint, uniform, normal, multinomial, manualSeed, nextUniform, nextSeed, Generator, type NestedData, type TensorOptions, type RandomOptions, type MultinomialOptions } from './creation.ts';
export * from './functions.ts';
export { noGrad, enableGrad, isGradEnabled } from './autograd.ts';
export { setDefaultDevice, getDefaultDevice, type DeviceName } from './device.ts';
export type { DType } from '../ir/dtype.ts';
export { hostScalar, traceGuard, onCapture, setLabel, labelOf, givenLabel, type HostGuard } from './host.ts';
export { setNumThreads, getNumThreads } from './threads.ts';
export * as autograd from './autograd-api.ts';
export { memory, type MemoryInfo, type DeviceMemory } from './memory.ts';
import './cpu.ts';
