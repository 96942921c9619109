// Line numbers of marked lines in a test file, so tests can check that listings and errors name
// the user's source line without hard-coding numbers: put `// MARK:name` at the end of a line and
// call `markedLine(import.meta.url, 'MARK:name')`.
import { readFileSync } from 'node:fs';

const cache = new Map<string, string[]>();

/** The 1-based line number of the single line of `fileUrl` that contains the comment `// <marker>`. */
export function markedLine(fileUrl: string, marker: string): number {
  let lines = cache.get(fileUrl);
  if (!lines) {
    lines = readFileSync(new URL(fileUrl), 'utf8').split('\n');
    cache.set(fileUrl, lines);
  }
  const hits = lines.map((l, i) => (l.includes(`// ${marker}`) ? i + 1 : -1)).filter((i) => i > 0);
  if (hits.length !== 1) throw new Error(`marker '// ${marker}' found on ${hits.length} lines of ${fileUrl}`);
  return hits[0];
}
