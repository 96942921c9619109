// kiln.utils: helpers for training programs (the progress line).
export { progress, Progress, type ProgressOptions, type ProgressStream, type ProgressValue } from './progress.ts';
