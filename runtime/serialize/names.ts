// kiln names its attributes in camelCase (`linearReluStack`, `runningMean`); PyTorch in snake_case
// (`linear_relu_stack`, `running_mean`). Files hold PyTorch's names, memory holds kiln's. The two
// functions below are each other's inverse on every dotted segment they change:
//   camel -> snake  for segments like `runningMean`, `conv2D`, `attnQKV` (a lowercase start, then
//                   capitals each opening a word): every capital becomes `_` + its lowercase;
//   snake -> camel  for segments like `running_mean`, `attn_q_k_v` (lowercase words, each after the
//                   first starting with a letter): every `_x` becomes `X`.
// Any other segment (`0`, `fc1`, `weight`, `W_q`, `_private`, `layer_2`) passes through unchanged,
// so names that are already PyTorch's survive a round trip. A kiln attribute spelled in snake_case
// (`my_layer`) would come back as `myLayer`: name kiln attributes in camelCase.

const CAMEL = /^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+$/;
const SNAKE = /^[a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)+$/;

/** kiln -> PyTorch: `linearReluStack.0.weight` -> `linear_relu_stack.0.weight`. */
export function toTorchName(name: string): string {
  return name.split('.').map((s) => (CAMEL.test(s) ? s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) : s)).join('.');
}

/** PyTorch -> kiln: `linear_relu_stack.0.running_mean` -> `linearReluStack.0.runningMean`. */
export function fromTorchName(name: string): string {
  return name.split('.').map((s) => (SNAKE.test(s) ? s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()) : s)).join('.');
}
