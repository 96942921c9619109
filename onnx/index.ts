// kiln.onnx: export a traced forward pass as an ONNX model (onnx/export.ts).
export { exportOnnx as export, OnnxExportError, type ExportOptions } from './export.ts';
