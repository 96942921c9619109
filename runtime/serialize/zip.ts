// A reader for the zip archives torch.save writes (PyTorch >= 1.6): entries are stored, not
// compressed (PyTorch's writer never compresses; it pads each entry so the data is aligned), and
// large files use the zip64 records. Only what such an archive needs is supported; a compressed or
// encrypted entry, a split archive, or anything out of bounds is a clear Error. Every entry read
// is checked against its CRC-32, so a corrupted storage is caught rather than loaded as noise.

export interface ZipEntry { name: string; method: number; flags: number; crc: number; size: number; compressedSize: number; localOffset: number }

const SIG_EOCD = 0x06054b50, SIG_EOCD64 = 0x06064b50, SIG_LOC64 = 0x07064b50, SIG_CENTRAL = 0x02014b50, SIG_LOCAL = 0x04034b50;

let crcTable: Uint32Array | null = null;

export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export const isZip = (bytes: Uint8Array): boolean => bytes.byteLength >= 4 && new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true) === SIG_LOCAL;

export class ZipReader {
  readonly entries = new Map<string, ZipEntry>();
  private readonly dv: DataView;

  constructor(private readonly bytes: Uint8Array, private readonly what = 'zip') {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const eocd = this.findEnd();
    let count = this.dv.getUint16(eocd + 10, true);
    let cdSize = this.dv.getUint32(eocd + 12, true);
    let cdOffset = this.dv.getUint32(eocd + 16, true);
    if (this.dv.getUint16(eocd + 4, true) !== 0 || this.dv.getUint16(eocd + 6, true) !== 0) this.fail('split (multi-disk) archives are not supported');
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      // zip64: the locator just before the end record points at the zip64 end record.
      const loc = eocd - 20;
      if (loc < 0 || this.u32(loc) !== SIG_LOC64) this.fail('the zip64 end-of-central-directory locator is missing');
      const rec = this.u64(loc + 8);
      this.need(rec, 56, 'zip64 end record');
      if (this.u32(rec) !== SIG_EOCD64) this.fail('the zip64 end-of-central-directory record is missing');
      count = this.u64(rec + 32);
      cdSize = this.u64(rec + 40);
      cdOffset = this.u64(rec + 48);
    }
    this.need(cdOffset, cdSize, 'central directory');
    let p = cdOffset;
    for (let i = 0; i < count; i++) {
      this.need(p, 46, 'central directory entry');
      if (this.u32(p) !== SIG_CENTRAL) this.fail(`central directory entry ${i} has a bad signature (corrupt archive)`);
      const nameLen = this.dv.getUint16(p + 28, true), extraLen = this.dv.getUint16(p + 30, true), commentLen = this.dv.getUint16(p + 32, true);
      this.need(p + 46, nameLen + extraLen + commentLen, 'central directory entry');
      const name = new TextDecoder().decode(this.bytes.subarray(p + 46, p + 46 + nameLen));
      let size = this.u32(p + 24), compressedSize = this.u32(p + 20), localOffset = this.u32(p + 42);
      // zip64 extended information (extra field 0x0001): 8-byte values for the fields that were 0xffffffff, in this order.
      for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen;) {
        const id = this.dv.getUint16(e, true), len = this.dv.getUint16(e + 2, true);
        if (id === 0x0001) {
          let q = e + 4;
          const next = (): number => {
            if (q + 8 > e + 4 + len) this.fail(`the zip64 field of '${name}' is too short`);
            this.need(q, 8, `zip64 field of '${name}'`);
            q += 8;
            return this.u64(q - 8);
          };
          if (size === 0xffffffff) size = next();
          if (compressedSize === 0xffffffff) compressedSize = next();
          if (localOffset === 0xffffffff) localOffset = next();
        }
        e += 4 + len;
      }
      if (this.entries.has(name)) this.fail(`entry '${name}' appears twice`);
      this.entries.set(name, { name, method: this.dv.getUint16(p + 10, true), flags: this.dv.getUint16(p + 8, true), crc: this.u32(p + 16), size, compressedSize, localOffset });
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  /** The bytes of a stored entry (a view into the archive), checked against its CRC-32. */
  read(name: string): Uint8Array {
    const e = this.entries.get(name);
    if (!e) this.fail(`has no entry '${name}'`);
    const entry = e!;
    if (entry.flags & 1) this.fail(`entry '${name}' is encrypted`);
    if (entry.method !== 0) this.fail(`entry '${name}' is compressed (method ${entry.method}); only stored entries are read, as torch.save writes them`);
    if (entry.size !== entry.compressedSize) this.fail(`entry '${name}' is stored but its sizes differ (${entry.compressedSize} vs ${entry.size})`);
    this.need(entry.localOffset, 30, `local header of '${name}'`);
    if (this.u32(entry.localOffset) !== SIG_LOCAL) this.fail(`the local header of '${name}' has a bad signature (corrupt archive)`);
    const start = entry.localOffset + 30 + this.dv.getUint16(entry.localOffset + 26, true) + this.dv.getUint16(entry.localOffset + 28, true);
    this.need(start, entry.size, `data of '${name}'`);
    const data = this.bytes.subarray(start, start + entry.size);
    if (crc32(data) !== entry.crc) this.fail(`entry '${name}' fails its CRC-32 check (corrupt file)`);
    return data;
  }

  private findEnd(): number {
    const min = Math.max(0, this.bytes.byteLength - 22 - 0xffff);
    for (let p = this.bytes.byteLength - 22; p >= min; p--) if (this.u32(p) === SIG_EOCD) return p;
    return this.fail('no end-of-central-directory record (truncated or not a zip archive)');
  }

  private u32(p: number): number { return this.dv.getUint32(p, true); }
  private u64(p: number): number {
    const v = this.dv.getBigUint64(p, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`a zip64 size or offset (${v}) is out of range`);
    return Number(v);
  }
  private need(at: number, len: number, what: string): void {
    if (at < 0 || len < 0 || at + len > this.bytes.byteLength) this.fail(`the ${what} at byte ${at} (${len} bytes) lies beyond the end of the ${this.bytes.byteLength}-byte archive (truncated file?)`);
  }
  private fail(msg: string): never {
    throw new Error(`${this.what}: ${msg}`);
  }
}
