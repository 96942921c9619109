// The runtime's public surface, for nn/ optim/ data/ and the package index.
export { Tensor, where, cat, stack, full, matmul, checkIndexRange, type TensorLike, type IndexEntry, type NestedArray, type CreationOptions } from './tensor.ts';
export { tensor, zeros, ones, zerosLike, onesLike, fullLike, arange, linspace, eye, rand, randn, randint, uniform, manualSeed, nextUniform, nextSeed, type NestedData, type TensorOptions } from './creation.ts';
export { noGrad, enableGrad, isGradEnabled } from './autograd.ts';
export { setDefaultDevice, getDefaultDevice, type DeviceName } from './device.ts';
export { hostScalar, traceGuard, onCapture, setLabel, labelOf, givenLabel, type HostGuard } from './host.ts';
export * as autograd from './autograd-api.ts';
import './cpu.ts';
