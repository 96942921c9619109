// User code for tests/browser.test.ts, bundled into /tests/page.js beside /kiln.js: a compiled
// function that branches on a tensor's value (a TraceError), and a listing of a small step. Both
// must name this file's URL and line, never kiln's bundle.
import * as kiln from '../../index.ts';
import type { Tensor } from '../../index.ts';

export async function traceError(): Promise<{ name: string; message: string; listing: string }> {
  const branchy = kiln.compile((t: Tensor) => {
    if (t.sum().itemSync() > 0) return t.mul(2);
    return t;
  });
  let name = '', message = '';
  try {
    await branchy(kiln.tensor([1, 2]));
  } catch (e) {
    ({ name, message } = e as Error);
  }
  const listed = kiln.compile((t: Tensor) => t.mul(3).exp());
  const listing = (await listed.lower(kiln.tensor([1, 2]))).forward.toString();
  return { name, message, listing };
}
