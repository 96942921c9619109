// How the CPU device gets its WebAssembly gemm (./gemm-wasm.ts) in a browser build (package.json's
// "#gemm", browser condition): an import() started when kiln loads, so a page does not load the gemm
// (its module encoder, packers and the thread pool) before its first line runs. Products generated in
// the same synchronous turn as the import, before the chunk arrives, run as JavaScript loops.
// (gemm-load.ts is Node's.)

import type { Gemm } from './gemm-wasm.ts';

export const loadGemm = (): Gemm | null | Promise<Gemm | null> => import('./gemm-wasm.ts').then((m) => m.gemm);
