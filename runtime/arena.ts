// Blocks of a WebAssembly memory handed out and given back: the thread pool's memory holds compiled
// programs' arrays beside the gemm's scratch (pool.ts), so that a product reads its operands where they
// are instead of copying them in. First fit over the free ranges, kept sorted by address with neighbours
// merged; the memory grows at its end when no free range fits.

/** Blocks start and end on this many bytes (a cache line: SIMD loads never straddle two blocks' lines). */
const ALIGN = 64;
const PAGE = 65536;

export class Arena {
  /** free ranges [at, at + bytes), sorted by address, never adjacent */
  private readonly free: { at: number; bytes: number }[] = [];
  /** bytes of each block handed out, by address */
  private readonly taken = new Map<number, number>();
  /** Bytes handed out and not given back. */
  takenBytes = 0;

  /** Manages `memory` from byte `base` (below it: not the arena's) up to `maxPages` pages. */
  constructor(private readonly memory: WebAssembly.Memory, base: number, private readonly maxPages: number) {
    const end = memory.buffer.byteLength;
    if (end > base) this.free.push({ at: base, bytes: end - base });
  }

  /** The address of a new block of at least `bytes`, or null when the memory cannot grow to hold it. */
  take(bytes: number): number | null {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    let i = this.free.findIndex((r) => r.bytes >= size);
    if (i < 0 && !this.growFor(size)) return null;
    if (i < 0) i = this.free.length - 1; // growFor left a range that fits at the end
    const r = this.free[i], at = r.at;
    if (r.bytes === size) this.free.splice(i, 1);
    else { r.at += size; r.bytes -= size; }
    this.taken.set(at, size);
    this.takenBytes += size;
    return at;
  }

  /** Gives block `at` back. */
  give(at: number): void {
    const size = this.taken.get(at);
    if (size === undefined) throw new Error(`arena: no block at ${at}`);
    this.taken.delete(at);
    this.takenBytes -= size;
    let i = this.free.findIndex((r) => r.at > at);
    if (i < 0) i = this.free.length;
    this.free.splice(i, 0, { at, bytes: size });
    const next = this.free[i + 1];
    if (next && at + size === next.at) { this.free[i].bytes += next.bytes; this.free.splice(i + 1, 1); }
    const prev = this.free[i - 1];
    if (prev && prev.at + prev.bytes === at) { prev.bytes += this.free[i].bytes; this.free.splice(i, 1); }
  }

  /** Grows the memory so that its last free range holds `size` bytes; false where it cannot grow that far. */
  private growFor(size: number): boolean {
    const end = this.memory.buffer.byteLength, last = this.free[this.free.length - 1];
    const tail = last && last.at + last.bytes === end ? last.bytes : 0;
    const pages = Math.ceil((size - tail) / PAGE);
    if (end / PAGE + pages > this.maxPages) return false;
    try {
      this.memory.grow(pages);
    } catch {
      return false; // no address space for it
    }
    if (tail) last.bytes += pages * PAGE;
    else this.free.push({ at: end, bytes: pages * PAGE });
    return true;
  }
}
