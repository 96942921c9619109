// kiln.optim (API.md "optim").
export { Optimizer, type Scalar, type OptimizerStateDict, type ParamGroupState, type HyperValue } from './optimizer.ts';
export { SGD, type SGDOptions } from './sgd.ts';
export { Adam, AdamW, type AdamOptions } from './adam.ts';
export { RMSprop, Adagrad, Adadelta, type RMSpropOptions, type AdagradOptions, type AdadeltaOptions } from './adaptive.ts';
export * as lrScheduler from './lr-scheduler.ts';
export type { ParamGroup, ParamsInput } from './optimizer.ts';
