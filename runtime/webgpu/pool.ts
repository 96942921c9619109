// A pool of storage GPUBuffers by size class, for one device.
//
// A storage's buffer comes back to the pool when the storage is garbage-collected (the backend registers
// each storage with a FinalizationRegistry). It is not handed out again until every piece of work that
// may still use it has finished: the backend tells the pool which submission a returned buffer must
// wait for (the next one when the pending, unsubmitted encoder uses it; otherwise the last one), and
// when submissions complete. Free buffers beyond `capBytes` are destroyed (only once idle, never while
// queued work still uses them).
//
// Size classes: exact up to 4 KiB (rounded to 16 bytes), then four classes per power of two
// (2^k, 1.25·2^k, 1.5·2^k, 1.75·2^k), so at most 25% of a buffer is slack.

export interface PoolStats {
  created: number; reused: number; destroyed: number; freeBytes: number; waiting: number; liveBytes: number;
  /** buffers held by storages (kiln.memory()), and bytes of returned buffers still waiting for their work */
  liveBuffers: number; waitingBytes: number;
}

export function sizeClass(bytes: number): number {
  if (bytes <= 4096) return Math.max(16, Math.ceil(bytes / 16) * 16);
  const p = 2 ** Math.floor(Math.log2(bytes));
  const q = p / 4;
  return Math.ceil(bytes / q) * q;
}


export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  /**
   * Returned buffers by the submission they wait for. Buckets, not one list: collected tensors come
   * back in bursts of thousands (one garbage collection), and each return must not rescan the others.
   */
  private waiting = new Map<number, GPUBuffer[]>();
  private waitingCount = 0;
  private freeBytes = 0;
  /** the submission count reached by completed work */
  private completed = 0;
  readonly stats: PoolStats = { created: 0, reused: 0, destroyed: 0, freeBytes: 0, waiting: 0, liveBytes: 0, liveBuffers: 0, waitingBytes: 0 };

  constructor(private device: GPUDevice, readonly capBytes: number, private usage: number) {}

  /** A buffer of at least `bytes` bytes (its size class; exactly `bytes` when the class would pass `maxBytes`). */
  acquire(bytes: number, maxBytes: number): GPUBuffer {
    let size = sizeClass(bytes);
    if (size > maxBytes) size = bytes;
    const list = this.free.get(size);
    const reused = list?.pop();
    if (reused) {
      this.freeBytes -= size;
      this.stats.reused++;
      this.stats.liveBytes += size;
      this.stats.liveBuffers++;
      this.sync();
      return reused;
    }
    this.stats.created++;
    this.stats.liveBytes += size;
    this.stats.liveBuffers++;
    this.sync();
    return this.device.createBuffer({ size, usage: this.usage });
  }

  /** Takes back a buffer no storage references any more; it is reusable once submission `epoch` completed. */
  release(buffer: GPUBuffer, epoch: number): void {
    this.stats.liveBytes -= buffer.size;
    this.stats.liveBuffers--;
    if (epoch <= this.completed) {
      this.keep(buffer);
    } else {
      this.stats.waitingBytes += buffer.size;
      let bucket = this.waiting.get(epoch);
      if (!bucket) this.waiting.set(epoch, (bucket = []));
      bucket.push(buffer);
      this.waitingCount++;
    }
    this.sync();
  }

  /** Work up to submission `epoch` has completed. */
  completedUpTo(epoch: number): void {
    if (epoch > this.completed) this.completed = epoch;
    this.drain();
  }

  private drain(): void {
    for (const [epoch, bucket] of this.waiting) {
      if (epoch > this.completed) continue;
      this.waiting.delete(epoch);
      this.waitingCount -= bucket.length;
      for (const b of bucket) {
        this.stats.waitingBytes -= b.size;
        this.keep(b);
      }
    }
    this.sync();
  }

  /** A buffer no work uses any more: free for reuse, or destroyed past the cap. */
  private keep(buffer: GPUBuffer): void {
    const bytes = buffer.size;
    if (this.freeBytes + bytes > this.capBytes) {
      buffer.destroy();
      this.stats.destroyed++;
      return;
    }
    let list = this.free.get(bytes);
    if (!list) this.free.set(bytes, (list = []));
    list.push(buffer);
    this.freeBytes += bytes;
  }

  private sync(): void {
    this.stats.freeBytes = this.freeBytes;
    this.stats.waiting = this.waitingCount;
  }

  /** Destroys every idle free buffer (buffers still waiting for their work are kept). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) { b.destroy(); this.stats.destroyed++; }
    this.free.clear();
    this.freeBytes = 0;
    this.sync();
  }
}
