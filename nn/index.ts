// kiln.nn (API.md "nn").
export { Module, Parameter, isParameter, type ParameterOptions, type ParameterConstructor, type StateDict, type LoadStateDictResult } from './module.ts';
export { Linear, Embedding, Identity, ReLU, Sigmoid, Tanh, GELU, SiLU, LeakyReLU, ELU, Softplus, Softmax, LogSoftmax, Flatten, Dropout, ModuleList, ModuleDict, Sequential, type LinearOptions, type EmbeddingOptions } from './layers.ts';
export { BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm, type BatchNormOptions, type LayerNormOptions, type GroupNormOptions } from './normalization.ts';
export { MSELoss, L1Loss, NLLLoss, CrossEntropyLoss, BCELoss, BCEWithLogitsLoss } from './losses.ts';
export type { Reduction, LossOptions, NLLLossOptions, CrossEntropyOptions, BCELossOptions, BCEWithLogitsOptions } from './functional.ts';
export * as functional from './functional.ts';
export * as init from './init.ts';
export { Conv1d, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, type ConvModuleOptions } from './conv-layers.ts';
export * as utils from './utils.ts';
