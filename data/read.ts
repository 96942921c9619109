// Data from anywhere: bytes from a URL (fetch), a file: URL or path (Node), or memory, gzip unpacked
// by magic number; `data.idx(source)` and `data.mnist({ source })` (parsed by ./idx.ts). Reading is
// async, so ./index.ts imports this module on first use: in kiln's browser build it is a chunk of its
// own, with the IDX parser (tests/bundle.test.ts).

import { nodeFs, requireNode } from '../runtime/node.ts';
import type { Tensor } from '../runtime/tensor.ts';
import { idxTensor, mnistFileNames, mnistTensors } from './idx.ts';
import type { MnistFiles } from './index.ts';

/** Where bytes come from: a URL (http(s), file:, or relative to the page), a path in Node, or the bytes themselves. */
export type ByteSource = string | URL | Uint8Array | ArrayBuffer;

/** A source in an error message. */
export const sourceName = (source: ByteSource): string =>
  typeof source === 'string' || source instanceof URL ? String(source) : `${source.byteLength} bytes in memory`;

/** A string or URL as a URL: absolute, else relative to the page in a browser; null for a Node path. */
function toUrl(source: string | URL): URL | null {
  if (source instanceof URL) return source;
  if (/^[a-z][\w+.-]*:/i.test(source) && !/^[a-z]:[\\/]/i.test(source)) return new URL(source);
  const page = (globalThis as { location?: { href: string } }).location?.href;
  return page ? new URL(source, page) : null;
}

async function gunzip(bytes: Uint8Array, what: string): Promise<Uint8Array> {
  try {
    const stream = new Blob([bytes.slice()]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new Error(`${what}: the gzip data is corrupt: ${(e as Error).message}`);
  }
}

/** The bytes of a source, gunzipped when they are gzip data. */
export async function readBytes(source: ByteSource, what: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  if (source instanceof Uint8Array) {
    bytes = source;
  } else if (source instanceof ArrayBuffer) {
    bytes = new Uint8Array(source);
  } else {
    const url = toUrl(source);
    if (url === null || url.protocol === 'file:') {
      const path = url === null ? String(source) : decodeURIComponent(url.pathname);
      try {
        bytes = await requireNode(nodeFs, `${what} from ${path}`).promises.readFile(path);
      } catch (e) {
        throw new Error(`${what}: cannot read ${path}: ${(e as Error).message}`);
      }
    } else {
      let response: Response;
      try {
        response = await fetch(url);
      } catch (e) {
        throw new Error(`${what}: fetching ${url.href} failed: ${(e as Error).message}`);
      }
      if (!response.ok) throw new Error(`${what}: fetching ${url.href} failed: HTTP ${response.status} ${response.statusText}`);
      bytes = new Uint8Array(await response.arrayBuffer());
    }
  }
  return bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzip(bytes, `${what} (${sourceName(source)})`) : bytes;
}

/** `data.idx(source)`: an IDX file as a tensor (./idx.ts's idxTensor). */
export async function idx(source: ByteSource): Promise<Tensor> {
  return idxTensor(await readBytes(source, 'data.idx'), `data.idx (${sourceName(source)})`);
}

/**
 * `data.mnist({ split, source })`'s tensors: `source` is a base URL or folder holding the split's
 * standard file names, or the two files (`{ images, labels }`).
 */
export async function mnist(source: string | URL | MnistFiles, split: 'train' | 'test'): Promise<[images: Tensor, labels: Tensor]> {
  let files: MnistFiles;
  if (typeof source === 'string' || source instanceof URL) {
    const names = mnistFileNames(split);
    const base = String(source).endsWith('/') ? String(source) : `${String(source)}/`;
    files = { images: base + names.images, labels: base + names.labels };
  } else if (source && typeof source === 'object' && 'images' in source && 'labels' in source) {
    files = source;
  } else {
    throw new Error('mnist: source must be a base URL or folder, or { images, labels } (URLs, paths or bytes)');
  }
  const [images, labels] = await Promise.all([readBytes(files.images, 'mnist images'), readBytes(files.labels, 'mnist labels')]);
  return mnistTensors(images, labels, { images: sourceName(files.images), labels: sourceName(files.labels) });
}
