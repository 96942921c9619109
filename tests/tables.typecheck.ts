// Compile-time checks, run by `tsc` (npm test, npm run typecheck), never executed: each per-primitive
// table's type demands an entry for EVERY primitive (or scalar op), so adding a primitive is a type error
// until each table has its entry. Each `@ts-expect-error` below holds a table missing one entry; were a
// table's type ever loosened (Partial, Record<string, ...>), the error would vanish and tsc would fail
// on the unused directive. The tables, in the order a new primitive fills them: README.md, "Primitives, one table per concern".

import { vjpRules } from '../runtime/vjp.ts';
import { jsSpelling } from '../compiler/codegen/spelling-js.ts';
import { wgslSpelling } from '../compiler/codegen/spelling-wgsl.ts';
import { lowerings } from '../compiler/lower.ts';
import { primitiveInfo, shapeRules } from '../ir/primitives.ts';
import { onnxLowerings } from '../onnx/ops.ts';

type Without<T, K extends keyof T> = Omit<T, K>;

declare const infoWithoutRandom: Without<typeof primitiveInfo, 'random'>;
// @ts-expect-error primitiveInfo needs an entry per primitive ('random' missing)
export const info: typeof primitiveInfo = infoWithoutRandom;

declare const shapeRulesWithoutRandom: Without<typeof shapeRules, 'random'>;
// @ts-expect-error shapeRules needs a rule per primitive ('random' missing)
export const shapes: typeof shapeRules = shapeRulesWithoutRandom;

declare const vjpRulesWithoutRandom: Without<typeof vjpRules, 'random'>;
// @ts-expect-error vjpRules needs a rule per primitive ('random' missing)
export const vjps: typeof vjpRules = vjpRulesWithoutRandom;

declare const loweringsWithoutRandom: Without<typeof lowerings, 'random'>;
// @ts-expect-error lowerings needs an entry per primitive ('random' missing)
export const lowering: typeof lowerings = loweringsWithoutRandom;

declare const onnxWithoutRandom: Without<typeof onnxLowerings, 'random'>;
// @ts-expect-error the ONNX export needs an entry per primitive ('random' missing)
export const onnx: typeof onnxLowerings = onnxWithoutRandom;

declare const jsUnaryWithoutExp: Without<typeof jsSpelling.unary, 'exp'>;
// @ts-expect-error the JS spelling needs every unary op ('exp' missing)
export const jsUnary: typeof jsSpelling.unary = jsUnaryWithoutExp;

declare const jsBinaryWithoutEq: Without<typeof jsSpelling.binary, 'eq'>;
// @ts-expect-error the JS spelling needs every binary and comparison op ('eq' missing)
export const jsBinary: typeof jsSpelling.binary = jsBinaryWithoutEq;

declare const wgslUnaryWithoutExp: Without<typeof wgslSpelling.unary, 'exp'>;
// @ts-expect-error the WGSL spelling needs every unary op ('exp' missing)
export const wgslUnary: typeof wgslSpelling.unary = wgslUnaryWithoutExp;

declare const wgslBinaryWithoutEq: Without<typeof wgslSpelling.binary, 'eq'>;
// @ts-expect-error the WGSL spelling needs every binary and comparison op ('eq' missing)
export const wgslBinary: typeof wgslSpelling.binary = wgslBinaryWithoutEq;
