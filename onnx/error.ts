// kiln.onnx.OnnxExportError: its own module so that the lazy facade (onnx/lazy.ts) has the class, for
// `instanceof`, before the exporter is loaded.

/** Thrown for a graph or construct that has no ONNX form. */
export class OnnxExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnnxExportError';
  }
}
