// How the CPU device gets its WebAssembly gemm (./gemm-wasm.ts) where package.json's "#gemm" has no
// browser condition -- Node, and whatever runs kiln's sources: at once, by a static import, so every
// product of a program runs in it. (gemm-load.browser.ts is what a browser build gets instead.)

import { gemm, type Gemm } from './gemm-wasm.ts';

export const loadGemm = (): Gemm | null | Promise<Gemm | null> => gemm;
