// Provenance from stack frames as each engine writes them: V8 (Node, Chromium) with paths, file:
// URLs and http URLs, Firefox and Safari ("fn@url:line:col"); frames without a file are no location.
import { describe, expect, it } from 'vitest';
import { parseFrame } from '../jit/source.ts';

describe('parseFrame', () => {
  it('reads V8 frames: a path, a file: URL, an http URL, with and without a function name', () => {
    expect(parseFrame('    at step (/home/u/app.ts:12:5)')).toEqual({ file: '/home/u/app.ts', line: 12, column: 5 });
    expect(parseFrame('    at file:///home/u/my%20app.mjs:3:14')).toEqual({ file: '/home/u/my app.mjs', line: 3, column: 14 });
    expect(parseFrame('    at Object.fn (http://127.0.0.1:8080/app.js:40:21)')).toEqual({ file: 'http://127.0.0.1:8080/app.js', line: 40, column: 21 });
    expect(parseFrame('    at async http://localhost:5173/src/main.js?t=1:7:3')).toEqual({ file: 'http://localhost:5173/src/main.js?t=1', line: 7, column: 3 });
  });

  it('reads Firefox and Safari frames', () => {
    expect(parseFrame('step@http://127.0.0.1:8080/app.js:12:5')).toEqual({ file: 'http://127.0.0.1:8080/app.js', line: 12, column: 5 });
    expect(parseFrame('@https://example.org/js/train.js:99:1')).toEqual({ file: 'https://example.org/js/train.js', line: 99, column: 1 });
  });

  it('frames without a file give no location', () => {
    expect(parseFrame('    at node:internal/process/task_queues:95:5')).toBeNull();
    expect(parseFrame('    at new Promise (<anonymous>)')).toBeNull();
    expect(parseFrame('    at Array.map (native)')).toBeNull();
    expect(parseFrame('Error: boom')).toBeNull();
  });
});
