// kiln.nn (API.md "nn").
export { Module, Parameter, isParameter, type ParameterOptions, type ParameterConstructor, type StateDict, type LoadStateDictResult } from './module.ts';
export { Linear, Identity, ReLU, Sigmoid, Tanh, Softmax, LogSoftmax, Flatten, Dropout, ModuleList, Sequential, type LinearOptions } from './layers.ts';
export { MSELoss, L1Loss, NLLLoss, CrossEntropyLoss, BCELoss, BCEWithLogitsLoss } from './losses.ts';
export type { Reduction, LossOptions, NLLLossOptions, CrossEntropyOptions, BCELossOptions, BCEWithLogitsOptions } from './functional.ts';
export * as functional from './functional.ts';
export * as init from './init.ts';
export { Conv1d, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, type ConvModuleOptions } from './conv-layers.ts';
