// kiln's public API (API.md). Re-exports only.
export * from './runtime/index.ts';
