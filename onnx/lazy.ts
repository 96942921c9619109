// kiln.onnx as the package exports it: a lazy facade over ./index.ts. The exporter -- the tracer, the
// graph passes, the ONNX tables and the encoder -- is imported by the first export, so a page that
// never exports never downloads it: in kiln's browser build it is a chunk of its own
// (scripts/build.ts). export() was async already; nothing else changes.
// tests/bundle.test.ts checks that this module exports what ./index.ts does.

import type { Module } from '../nn/module.ts';
import type { Tensor } from '../runtime/tensor.ts';
import type { ExportOptions } from './export.ts';

export { OnnxExportError } from './error.ts';
export type { ExportOptions } from './export.ts';

type Exporter = typeof import('./index.ts');
let loading: Promise<Exporter> | undefined;

function load(): Promise<Exporter> {
  loading ??= import('./index.ts').catch((e: unknown) => {
    loading = undefined; // a later call may try again
    throw new Error(`onnx.export: cannot load kiln's ONNX exporter module: ${e instanceof Error ? e.message : String(e)}`);
  });
  return loading;
}

/** `await kiln.onnx.export(fnOrModule, exampleInputs, opts)`: ./export.ts's exportOnnx (the model's bytes). */
async function exportModel(fnOrModule: ((...args: Tensor[]) => unknown) | Module, exampleInputs: Tensor | readonly Tensor[], opts?: ExportOptions): Promise<Uint8Array> {
  return (await load()).export(fnOrModule, exampleInputs, opts);
}
export { exportModel as export };
