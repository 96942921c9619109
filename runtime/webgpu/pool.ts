// A pool of storage memory by size class, for one device: whole GPUBuffers, and slots of shared arena
// buffers for tiny storages.
//
// A storage's memory comes back to the pool when the storage is garbage-collected (the backend registers
// each storage with a FinalizationRegistry). It is not handed out again until every piece of work that
// may still use it has finished: the backend tells the pool which submission a returned block must
// wait for (the next one when the pending, unsubmitted encoder uses it; otherwise the last one), and
// when submissions complete. Free buffers beyond `capBytes` are destroyed (only once idle, never while
// queued work still uses them).
//
// Size classes: exact up to 4 KiB (rounded to 16 bytes), then four classes per power of two
// (2^k, 1.25·2^k, 1.5·2^k, 1.75·2^k), so at most 25% of a buffer is slack.
//
// Slots: eager elementwise results of at most SLOT_MAX bytes (a training loop's scalars) live in slots of
// a shared arena buffer per dtype (ARENA_BYTES, carved into pages of one size class each) instead of a
// buffer each. Creating a buffer costs ~10 us in dawn.node, and kernels binding slots bind the same
// arenas launch after launch, so their bind groups are reused (the backend adds a slot's `base` to every
// offset it binds). One arena per dtype, not per size class: arguments in the same buffer share one
// binding (backend.ts), so which of a kernel's arguments are slots, not where each slot lies, decides
// its shader variant; and a shared binding has one element type, so dtypes never share an arena.
// Another arena is made only when one is full. Arenas are kept for the device's lifetime (their
// slots are reused: at most the peak of live tiny storages).

import type { DType } from '../../ir/dtype.ts';

export interface PoolStats {
  created: number; reused: number; destroyed: number; freeBytes: number; waiting: number; liveBytes: number;
  /** storages' blocks held (kiln.memory()), and bytes of returned blocks still waiting for their work */
  liveBuffers: number; waitingBytes: number;
  /** arena buffers created for slots */
  arenas: number;
}

/** A storage's memory: a whole buffer (base 0), or a slot `bytes` long at element `base` of the arena of dtype `slot`. */
export interface Block { readonly buffer: GPUBuffer; readonly base: number; readonly bytes: number; readonly slot: DType | null }

/** The largest storage (bytes) kept in a slot; an arena's size, and the page a size class takes at a time. */
export const SLOT_MAX = 256;
const ARENA_BYTES = 2 * 1024 * 1024;
const PAGE_BYTES = 64 * 1024;

export function sizeClass(bytes: number): number {
  if (bytes <= 4096) return Math.max(16, Math.ceil(bytes / 16) * 16);
  const p = 2 ** Math.floor(Math.log2(bytes));
  const q = p / 4;
  return Math.ceil(bytes / q) * q;
}

export class BufferPool {
  /** free whole buffers by size class, and free slots by dtype and size class */
  private free = new Map<number, Block[]>();
  private freeSlots = new Map<string, Block[]>();
  /**
   * Returned blocks by the submission they wait for. Buckets, not one list: collected tensors come
   * back in bursts of thousands (one garbage collection), and each return must not rescan the others.
   */
  private waiting = new Map<number, Block[]>();
  private waitingCount = 0;
  /** bytes of free whole buffers (what the cap limits) and of free slots */
  private freeBytes = 0;
  private freeSlotBytes = 0;
  /** the submission count reached by completed work */
  private completed = 0;
  /** per dtype: the arena new pages are carved from, and bytes of it carved so far */
  private arenas = new Map<DType, { buffer: GPUBuffer; used: number }>();
  readonly stats: PoolStats = { created: 0, reused: 0, destroyed: 0, freeBytes: 0, waiting: 0, liveBytes: 0, liveBuffers: 0, waitingBytes: 0, arenas: 0 };

  constructor(private device: GPUDevice, readonly capBytes: number, private usage: number) {}

  /** A buffer of at least `bytes` bytes (its size class; exactly `bytes` when the class would pass `maxBytes`). */
  acquire(bytes: number, maxBytes: number): Block {
    let size = sizeClass(bytes);
    if (size > maxBytes) size = bytes;
    const reused = this.free.get(size)?.pop();
    if (reused) this.freeBytes -= size;
    const block = reused ?? { buffer: this.device.createBuffer({ size, usage: this.usage }), base: 0, bytes: size, slot: null };
    this.handOut(block, reused !== undefined);
    return block;
  }

  /** A slot of at least `bytes` bytes (at most SLOT_MAX) in the arena of `dtype`. */
  acquireSlot(dtype: DType, bytes: number): Block {
    const size = sizeClass(bytes);
    if (size > SLOT_MAX) throw new Error(`kiln: an arena slot holds at most ${SLOT_MAX} bytes, not ${bytes}`);
    const key = `${dtype}:${size}`;
    let list = this.freeSlots.get(key);
    const reused = list?.pop();
    if (reused) {
      this.freeSlotBytes -= size;
      this.handOut(reused, true);
      return reused;
    }
    // a new page: its first slot is handed out, the rest are free (lowest offsets first)
    let arena = this.arenas.get(dtype);
    if (!arena || arena.used + PAGE_BYTES > ARENA_BYTES) {
      arena = { buffer: this.device.createBuffer({ size: ARENA_BYTES, usage: this.usage, label: `kiln ${dtype} arena` }), used: 0 };
      this.arenas.set(dtype, arena);
      this.stats.arenas++;
    }
    const { buffer } = arena, page = arena.used / 4;
    arena.used += PAGE_BYTES;
    if (!list) this.freeSlots.set(key, (list = []));
    const n = Math.floor(PAGE_BYTES / size);
    for (let i = n - 1; i >= 1; i--) list.push({ buffer, base: page + (i * size) / 4, bytes: size, slot: dtype });
    this.freeSlotBytes += (n - 1) * size;
    const block: Block = { buffer, base: page, bytes: size, slot: dtype };
    this.handOut(block, false);
    return block;
  }

  private handOut(block: Block, reused: boolean): void {
    if (reused) this.stats.reused++;
    else this.stats.created++;
    this.stats.liveBytes += block.bytes;
    this.stats.liveBuffers++;
    this.sync();
  }

  /** Takes back a block no storage references any more; it is reusable once submission `epoch` completed. */
  release(block: Block, epoch: number): void {
    this.stats.liveBytes -= block.bytes;
    this.stats.liveBuffers--;
    if (epoch <= this.completed) {
      this.keep(block);
    } else {
      this.stats.waitingBytes += block.bytes;
      let bucket = this.waiting.get(epoch);
      if (!bucket) this.waiting.set(epoch, (bucket = []));
      bucket.push(block);
      this.waitingCount++;
    }
    this.sync();
  }

  /** Work up to submission `epoch` has completed. */
  completedUpTo(epoch: number): void {
    if (epoch > this.completed) this.completed = epoch;
    for (const [e, bucket] of this.waiting) {
      if (e > this.completed) continue;
      this.waiting.delete(e);
      this.waitingCount -= bucket.length;
      for (const b of bucket) {
        this.stats.waitingBytes -= b.bytes;
        this.keep(b);
      }
    }
    this.sync();
  }

  /** A block no work uses any more: free for reuse, or (a whole buffer past the cap) destroyed. */
  private keep(block: Block): void {
    const { bytes } = block;
    if (block.slot) {
      this.freeSlotBytes += bytes;
    } else if (this.freeBytes + bytes > this.capBytes) {
      block.buffer.destroy();
      this.stats.destroyed++;
      return;
    } else {
      this.freeBytes += bytes;
    }
    if (block.slot) {
      const key = `${block.slot}:${bytes}`;
      let list = this.freeSlots.get(key);
      if (!list) this.freeSlots.set(key, (list = []));
      list.push(block);
      return;
    }
    let list = this.free.get(bytes);
    if (!list) this.free.set(bytes, (list = []));
    list.push(block);
  }

  private sync(): void {
    this.stats.freeBytes = this.freeBytes + this.freeSlotBytes;
    this.stats.waiting = this.waitingCount;
  }

  /** Destroys every idle free buffer (buffers still waiting for their work, and arenas, are kept). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) { b.buffer.destroy(); this.stats.destroyed++; }
    this.free.clear();
    this.freeBytes = 0;
    this.sync();
  }
}
