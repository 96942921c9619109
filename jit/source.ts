// Source provenance: which line of the user's program created an IR node or read a traced value.
// The first stack frame outside kiln's own folders is the user's; acorn recovers the expression there.

import { parseExpressionAt } from 'acorn';
import { cwd, nodeFs } from '../runtime/node.ts';

const fileURLToPath = (u: string): string => decodeURIComponent(new URL(u).pathname);
const root = fileURLToPath(new URL('../', import.meta.url).href);
const libraryDirs = ['jit/', 'runtime/', 'compiler/', 'ir/', 'nn/', 'optim/', 'data/', 'index.ts'].map((d) => root + d);
const frameRe = /\(?((?:file:\/\/)?[^\s()]+?):(\d+):(\d+)\)?\s*$/;

export interface SourceLocation { file: string; line: number; column: number }

const isLibrary = (file: string): boolean => file.includes('/node_modules/') || file.startsWith('node:') || libraryDirs.some((d) => file.startsWith(d));

/** The innermost user frame of the current stack, or null. */
export function userFrame(): SourceLocation | null {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 60;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  for (const line of stack.split('\n').slice(1)) {
    const m = frameRe.exec(line.trim());
    if (!m) continue;
    const file = m[1].startsWith('file://') ? fileURLToPath(m[1]) : m[1];
    if (!file.startsWith('/') || isLibrary(file)) continue;
    return { file, line: Number(m[2]), column: Number(m[3]) };
  }
  return null;
}

const fileCache = new Map<string, string[] | null>();
function lineText(file: string, line: number): string | null {
  let lines = fileCache.get(file);
  if (lines === undefined) {
    try { lines = nodeFs()?.readFileSync(file, 'utf8').split('\n') ?? null; } catch { lines = null; }
    fileCache.set(file, lines);
  }
  return lines?.[line - 1] ?? null;
}

/** The expression at a location: from the start of the member chain at `column` to its end. */
export function expressionAt(loc: SourceLocation): string | null {
  const text = lineText(loc.file, loc.line);
  if (text === null) return null;
  let start = Math.max(0, loc.column - 1);
  while (start > 0 && /[\w$.)\]]/.test(text[start - 1])) {
    if (text[start - 1] === ')' || text[start - 1] === ']') break;
    start--;
  }
  try {
    const node = parseExpressionAt(text, start, { ecmaVersion: 'latest' });
    return text.slice(node.start, node.end);
  } catch {
    return text.trim();
  }
}

const relative = (file: string): string => (cwd() && file.startsWith(cwd() + '/') ? file.slice(cwd().length + 1) : file);

/** "file:line  expression" for the user frame of the current stack, or undefined. */
export function describeUserSource(): string | undefined {
  const loc = userFrame();
  if (!loc) return undefined;
  const text = lineText(loc.file, loc.line)?.trim();
  return `${relative(loc.file)}:${loc.line}${text ? '  ' + text : ''}`;
}

export function describeLocation(loc: SourceLocation): string {
  const expr = expressionAt(loc);
  return `${relative(loc.file)}:${loc.line}:${loc.column}${expr ? ` (${expr})` : ''}`;
}
