// Layers point one way (DESIGN.md, issue 7): nn/ optim/ data/ and jit/ -> runtime/ -> compiler/ -> ir/.
// Reads the import lines of every library .ts file (everything outside tests/, bench/, examples/ and
// node_modules/) and fails on an import from a lower layer to a higher one or on a circle of imports
// across folders. A circle inside one folder (Tensor <-> dispatcher) is fine.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const skipped = new Set(['tests', 'bench', 'examples', 'node_modules', 'dist', 'scripts']);

/** Library .ts files, relative to the repository root. */
function libraryFiles(dir = root): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (name.startsWith('.') || (dir === root && skipped.has(name))) return [];
    if (statSync(path).isDirectory()) return libraryFiles(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [relative(root, path)] : [];
  });
}

/** Module specifiers of a file's static imports and re-exports (multi-line ones included). */
function importsOf(text: string): string[] {
  const specs: string[] = [];
  // `import x, { a, type b } from '...'`, `export * as m from '...'`, `import '...'`: only names,
  // braces, commas and `*` may come between the keyword and `from` (so `export const s = '...'` is not one).
  const re = /^\s*(?:(?:import|export)\s[\w*\s{},$]*?\bfrom\s*|import\s*)['"]([^'"]+)['"]/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) specs.push(m[1]);
  return specs;
}

/** The top-level folder a file belongs to ('.' for files at the root, like index.ts). */
const folderOf = (file: string): string => (file.includes('/') ? file.slice(0, file.indexOf('/')) : '.');

interface Edge { from: string; to: string; line: string }

/** Cross-folder import edges: file -> the folder of each relative import outside its own folder. */
function folderEdges(files: Record<string, string[]>): Edge[] {
  const edges: Edge[] = [];
  for (const [file, specs] of Object.entries(files)) {
    for (const spec of specs) {
      if (!spec.startsWith('.')) continue; // packages (acorn, webgpu) are outside the layering
      const target = relative(root, resolve(root, dirname(file), spec));
      if (folderOf(target) !== folderOf(file)) edges.push({ from: file, to: target, line: spec });
    }
  }
  return edges;
}

/** What each folder may import besides itself; the rules of issue 7. */
function violations(files: Record<string, string[]>): string[] {
  const out: string[] = [];
  for (const [file, specs] of Object.entries(files)) {
    if (folderOf(file) === 'ir' && specs.some((s) => !s.startsWith('./'))) out.push(`${file}: ir/ imports nothing outside ir/ (imports ${specs.filter((s) => !s.startsWith('./')).join(', ')})`);
  }
  for (const e of folderEdges(files)) {
    const from = folderOf(e.from), to = folderOf(e.to);
    if (from === 'ir') continue; // reported above
    if (from === 'compiler' && to !== 'ir') out.push(`${e.from}: compiler/ imports only ir/, not ${e.to}`);
    if (from === 'runtime' && ['jit', 'nn', 'optim', 'data', '.'].includes(to)) out.push(`${e.from}: runtime/ must not import the layer above (${e.to})`);
  }
  // No circle across folders: a folder may not reach itself through other folders.
  const next = new Map<string, Set<string>>();
  for (const e of folderEdges(files)) {
    const from = folderOf(e.from);
    if (!next.has(from)) next.set(from, new Set());
    next.get(from)!.add(folderOf(e.to));
  }
  for (const start of next.keys()) {
    const path = findPath(next, start);
    if (path) out.push(`folders import each other in a circle: ${path.join(' -> ')}`);
  }
  return out;
}

/** A path start -> ... -> start through the folder graph, or null. */
function findPath(next: Map<string, Set<string>>, start: string): string[] | null {
  const seen = new Set<string>();
  const walk = (at: string, path: string[]): string[] | null => {
    for (const n of next.get(at) ?? []) {
      if (n === start) return [...path, n];
      if (seen.has(n)) continue;
      seen.add(n);
      const found = walk(n, [...path, n]);
      if (found) return found;
    }
    return null;
  };
  return walk(start, [start]);
}

describe('layering', () => {
  const files = Object.fromEntries(libraryFiles().map((f) => [f, importsOf(readFileSync(join(root, f), 'utf8'))]));

  it('reads the import lines of every library file', () => {
    const folders = new Set(Object.keys(files).map(folderOf));
    for (const f of ['ir', 'compiler', 'runtime', 'jit', 'nn', 'optim', 'data', '.']) expect(folders, f).toContain(f);
    expect(files['jit/compile.ts']).toContain('../compiler/pipeline.ts');
    // a multi-line import is read whole
    expect(importsOf("import {\n  a,\n  type b,\n} from '../x.ts';\nexport * as y from './y.ts';\nimport type {} from 'webgpu';\nimport './z.ts';\nexport const s = 'no';\nexport function f(k = 'no') {}")).toEqual(['../x.ts', './y.ts', 'webgpu', './z.ts']);
  });

  it('no import points from a lower layer to a higher one, and no folders import each other', () => {
    expect(violations(files)).toEqual([]);
  });

  it('the checker itself flags each kind of violation', () => {
    const v = violations({
      'ir/a.ts': ['./shape.ts', '../runtime/tensor.ts'],
      'compiler/b.ts': ['../ir/graph.ts', '../runtime/device.ts'],
      'runtime/c.ts': ['../compiler/lower.ts', '../jit/trace.ts'],
      'nn/d.ts': ['../optim/e.ts'],
      'optim/e.ts': ['../nn/d.ts'],
    });
    expect(v).toContain('ir/a.ts: ir/ imports nothing outside ir/ (imports ../runtime/tensor.ts)');
    expect(v).toContain('compiler/b.ts: compiler/ imports only ir/, not runtime/device.ts');
    expect(v).toContain('runtime/c.ts: runtime/ must not import the layer above (jit/trace.ts)');
    expect(v).toContain('folders import each other in a circle: nn -> optim -> nn');
    expect(v).toContain('folders import each other in a circle: ir -> runtime -> compiler -> ir');
    // the intended layering passes
    expect(violations({
      'ir/a.ts': ['./shape.ts'],
      'compiler/b.ts': ['../ir/a.ts', './c.ts'],
      'runtime/c.ts': ['../compiler/b.ts', '../ir/a.ts', './d.ts'],
      'runtime/d.ts': ['./c.ts'],
      'jit/e.ts': ['../runtime/c.ts', '../compiler/b.ts', 'acorn'],
      'nn/f.ts': ['../runtime/c.ts'],
      'optim/g.ts': ['../runtime/c.ts'],
      'index.ts': ['./jit/e.ts', './nn/f.ts', './optim/g.ts'],
    })).toEqual([]);
  });
});
