// kiln.optim (API.md "optim").
export { Optimizer, type Scalar, type OptimizerStateDict, type ParamGroupState, type HyperValue } from './optimizer.ts';
export { SGD, type SGDOptions } from './sgd.ts';
export { Adam, AdamW, type AdamOptions } from './adam.ts';
