// kiln.TraceError: what compile() throws when traced code does something a static graph cannot
// express (reading a traced value to branch on it). This abstract class is what the package exports,
// for `instanceof`, from a module of a few lines; the errors themselves are jit/trace.ts's TraceError,
// a subclass that composes the message with the user's source line, and that loads with the compiler
// (jit/lazy.ts, README.md, "In the browser").

import type { SourceLocation } from './source.ts';

export abstract class TraceErrorBase extends Error {
  /** the user's line that did it, where a frame of the stack is the user's */
  abstract readonly location: SourceLocation | null;
  /** Completes the message with the expression at the user's line (fetching its text and importing acorn as needed). */
  abstract withExpression(): Promise<this>;
}
