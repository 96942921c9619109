// Structural keys for caches and CSE. Plain JSON spells Infinity, -Infinity and NaN all as `null` and
// -0 as `0`, so two constants that differ only there (a -Infinity mask fill and a NaN) would share a
// cached kernel or be merged by CSE; these keys keep them apart.

const replacer = (_: string, x: unknown): unknown =>
  typeof x === 'number' && (!Number.isFinite(x) || Object.is(x, -0)) ? `#num:${Object.is(x, -0) ? '-0' : String(x)}` : x;

/** JSON of `value` with non-finite numbers and -0 kept distinct. */
export const structuralKey = (value: unknown): string => JSON.stringify(value, replacer);
