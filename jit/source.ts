// Source provenance: which line of the user's program created an IR node or read a traced value.
// The first stack frame outside kiln's own code is the user's: a file path in Node, a URL in a
// browser (http://host/app.js:12:5). A line's text comes from the file system in Node and from
// fetch() for URLs; acorn, which recovers the expression at a column, is imported only when a
// TraceError asks for it, so it is no part of kiln's bundle.

import type { parseExpressionAt } from 'acorn';
import { setSourceDisplay } from '../ir/graph.ts';
import { cwd, nodeFs } from '../runtime/node.ts';
import { bundleFileUrls } from './bundle-files.ts';

export interface SourceLocation { file: string; line: number; column: number }

// V8 "at f (http://h/app.js:12:5)" or "at /abs/app.ts:12:5"; Firefox and Safari "f@http://h/app.js:12:5".
const frameRe = /([^\s()@]+):(\d+):(\d+)\)?$/;
const isUrl = (file: string): boolean => /^[a-z][\w+.-]*:\/\//i.test(file);
const fileURLToPath = (u: string): string => decodeURIComponent(new URL(u).pathname);

/** The location in one line of a stack trace, or null where it names no file (node:internal, native). */
export function parseFrame(frame: string): SourceLocation | null {
  const m = frameRe.exec(frame.trim());
  if (!m) return null;
  const file = m[1].startsWith('file://') ? fileURLToPath(m[1]) : m[1];
  if (!file.startsWith('/') && !isUrl(file)) return null; // node:internal, <anonymous>, native
  return { file, line: Number(m[2]), column: Number(m[3]) };
}

// Run from source (Node, vitest), kiln is these folders; bundled (dist/kiln.js, a page's kiln.js),
// it is the one file this code runs from. A bundle that also holds the user's own code therefore
// yields no user frame (nothing rather than a line of kiln).
const ownFile = parseFrame(new Error().stack?.split('\n').find((l) => frameRe.test(l.trim())) ?? '')?.file ?? null;
const root = import.meta.url.startsWith('file:') ? fileURLToPath(new URL('../', import.meta.url).href) : null;
const libraryDirs = root === null ? [] : ['jit/', 'runtime/', 'compiler/', 'ir/', 'nn/', 'optim/', 'data/', 'onnx/', 'index.ts'].map((d) => root + d);
const isLibrary = (file: string): boolean =>
  file === ownFile || file.includes('/node_modules/') || libraryDirs.some((d) => file.startsWith(d));

let bundleFiles = new Set<string>();
/** Whether `file` (a path, or a URL that is not file:) is one of the files kiln runs from when bundled (./bundle-files.ts). */
function inBundle(file: string): boolean {
  if (bundleFileUrls.size !== bundleFiles.size) bundleFiles = new Set([...bundleFileUrls].map((u) => (u.startsWith('file://') ? fileURLToPath(u) : u)));
  return bundleFiles.has(file);
}

/** The innermost user frame of the current stack, or null. */
export function userFrame(): SourceLocation | null {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 60;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  for (const frame of stack.split('\n').slice(1)) {
    const loc = parseFrame(frame);
    if (loc && !isLibrary(loc.file) && !inBundle(loc.file)) return loc;
  }
  return null;
}

// A file's lines: read synchronously in Node, fetched for URLs (null: unreadable, or not yet fetched).
const texts = new Map<string, string[] | null>();
const fetches = new Map<string, Promise<void>>();

function lines(file: string): string[] | null {
  if (isUrl(file)) {
    loadText(file);
    return texts.get(file) ?? null;
  }
  let ls = texts.get(file);
  if (ls === undefined) {
    try { ls = nodeFs()?.readFileSync(file, 'utf8').split('\n') ?? null; } catch { ls = null; }
    texts.set(file, ls);
  }
  return ls;
}

/** Starts fetching a URL's text once; the promise settles when it is cached (or known unreadable). */
function loadText(url: string): Promise<void> {
  let p = fetches.get(url);
  if (!p) {
    // The text is only ever displayed. A failed fetch (cross-origin, offline) leaves file:line alone.
    p = fetch(url)
      .then(async (r) => { texts.set(url, r.ok ? (await r.text()).split('\n') : null); })
      .catch(() => { texts.set(url, null); });
    fetches.set(url, p);
  }
  return p;
}

/** Resolves when every URL seen so far has been fetched, so listings built afterwards show the text. */
export async function sourceTextsLoaded(): Promise<void> {
  await Promise.all(fetches.values());
}

// The expression parser, imported on first need. The specifier is a variable so that bundlers leave
// acorn (about 45% of kiln's minified size) out of the bundle: Node resolves it from node_modules, a
// page through its import map; where it cannot be imported, messages show the whole line instead.
type Parse = typeof parseExpressionAt;
let parse: Parse | null | undefined;
const acornSpecifier = 'acorn';

async function loadParser(): Promise<void> {
  if (parse !== undefined) return;
  try {
    parse = ((await import(/* @vite-ignore */ acornSpecifier)) as { parseExpressionAt: Parse }).parseExpressionAt;
  } catch {
    parse = null;
  }
}

/** Loads what `describeLocation` needs for the expression at `loc`: the file's text and acorn. */
export async function loadExpression(loc: SourceLocation): Promise<void> {
  await Promise.all([isUrl(loc.file) ? loadText(loc.file) : undefined, loadParser()]);
}

/** Where the member chain ending at `end` starts: `t.sum().itemSync` from `itemSync`, over calls and indexing. */
function chainStart(text: string, end: number): number {
  let i = end;
  while (i > 0) {
    const c = text[i - 1];
    if (/[\w$.]/.test(c)) {
      i--;
    } else if (c === ')' || c === ']') {
      let depth = 0, j = i - 1;
      for (; j >= 0; j--) {
        if (text[j] === ')' || text[j] === ']') depth++;
        else if ((text[j] === '(' || text[j] === '[') && --depth === 0) break;
      }
      if (j < 0) break;
      i = j;
    } else {
      break;
    }
  }
  return i;
}

/** The expression at a location: from the start of the member chain at `column` to its end. */
export function expressionAt(loc: SourceLocation): string | null {
  const text = lines(loc.file)?.[loc.line - 1];
  if (text === undefined) return null;
  const start = chainStart(text, Math.max(0, loc.column - 1));
  if (!parse) return text.trim();
  try {
    const node = parse(text, start, { ecmaVersion: 'latest' });
    return text.slice(node.start, node.end);
  } catch {
    return text.trim();
  }
}

const shown = (file: string): string => (cwd() && file.startsWith(cwd() + '/') ? file.slice(cwd().length + 1) : file);

// Labels of IR nodes ("file:line") and the lines they stand for, so listings can add the text later.
const labels = new Map<string, SourceLocation>();

/** "file:line" of the user frame of the current stack (an IR node's source), or undefined. */
export function describeUserSource(): string | undefined {
  const loc = userFrame();
  if (!loc) return undefined;
  const label = `${shown(loc.file)}:${loc.line}`;
  if (!labels.has(label)) {
    labels.set(label, loc);
    lines(loc.file); // a URL starts fetching now, so its text is there when a listing is printed
  }
  return label;
}

/** A node's source label with the line's code when it is known: "file:line  code". */
export function withLineText(label: string): string {
  const loc = labels.get(label);
  const text = loc && lines(loc.file)?.[loc.line - 1]?.trim();
  return text ? `${label}  ${text}` : label;
}
setSourceDisplay(withLineText);

/** "file:line:column (expression)"; the expression once `loadExpression` has run, else the whole line. */
export function describeLocation(loc: SourceLocation): string {
  const expr = expressionAt(loc);
  return `${shown(loc.file)}:${loc.line}:${loc.column}${expr ? ` (${expr})` : ''}`;
}
