// `--plot [file]` for the examples: the flag alone means the example's default file name
// (node:util's parseArgs has no optional option values, so the default is put in first).

/** argv with `--plot` given its default value when no file follows it. */
export function withPlotDefault(argv: readonly string[], defaultFile: string): string[] {
  const out = [...argv];
  for (let i = 0; i < out.length; i++) {
    if (out[i] === '--plot' && (i + 1 === out.length || out[i + 1].startsWith('--'))) out.splice(i + 1, 0, defaultFile);
  }
  return out;
}
