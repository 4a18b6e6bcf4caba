/**
 * Payloads of the DTL messages (inside a frame, see frame.ts), and the entry record.
 *
 * An entry record is the unit the client ships, the server stores verbatim in its files and hands back
 * on recovery; it carries its own checksum, so a damaged entry is found wherever it sits:
 *
 *   u32 body length, u32 crc32 of the body, body = u8 kind, u32 tag, f64 value, then the data
 *
 *   kind 0 (cluster): value = cluster address, data = the whole 4 KiB cluster as written
 *   kind 1 (resize):  value = the new size in bytes; data = u32 the TLog that holds the resize record
 *   kind 2 (discard): value = the first cluster address; data = f64 cluster count, u32 the TLog that holds
 *                     the DISCARD record (../volume/datapath/formats/tlog-format.ts): those clusters read as zeros
 *
 * A discard travels in the same stream as the clusters, so the DTL keeps it in order with the writes
 * around it: a host loss after a discard replays the writes before it, the discard, then the writes after
 * it, and never brings the discarded data back.
 *
 * `tag` is the SCO the entry belongs to: a cluster's SCO, or for a resize the SCO open (or next) when it
 * happened. Tags never decrease along a vDisk's log, so "the entries with tag > s" is a suffix of it, and
 * RemoveUpTo(s) drops exactly what the backend holds once SCO s is there. Several resizes may share a tag
 * (no SCO between them), so recovery tells a resize (or a discard) the backend has by its TLog number instead.
 */
import { crc32 } from 'node:zlib';
import { crc32Join } from '../util/crc32-combine.js';
import { DtlError } from './errors.js';
import { HEADER_BYTES } from './frame.js';

export const ENTRY_HEAD = 8;
const BODY_FIXED = 13;
export const MAX_ENTRY_DATA = 65536;

export type DtlEntry =
  | { kind: 'cluster'; tag: number; address: number; data: Buffer }
  | { kind: 'resize'; tag: number; size: number; tlog: number }
  | { kind: 'discard'; tag: number; first: number; count: number; tlog: number };

/** A resize entry: SCO tag, new size, and the TLog that holds its record. */
export function encodeResize(tag: number, size: number, tlog: number): Buffer {
  const t = Buffer.allocUnsafe(4);
  t.writeUInt32LE(tlog >>> 0);
  return encodeEntry(1, tag, size, t);
}

/** A discard entry: SCO tag, the clusters first..first+count-1, and the TLog that holds its record. */
export function encodeDiscard(tag: number, first: number, count: number, tlog: number): Buffer {
  const t = Buffer.allocUnsafe(12);
  t.writeDoubleLE(count, 0);
  t.writeUInt32LE(tlog >>> 0, 8);
  return encodeEntry(2, tag, first, t);
}

export function encodeEntry(kind: 0 | 1 | 2, tag: number, value: number, data?: Uint8Array): Buffer {
  return encodeEntryWithCrc(kind, tag, value, data).rec;
}

/**
 * A cluster entry, and the crc32 of the whole record (for the frame's checksum: frame.ts encodeFrameParts).
 * `dataCrc`, when known (the FUSE reader thread computed it: volume/datapath/write-cache/known-crcs.ts), is the crc32
 * of `data`: the entry's checksum is then combined from it, and the 4 KiB are read only by the copy.
 */
export function encodeClusterEntry(tag: number, address: number, data: Uint8Array, dataCrc?: number): { rec: Buffer; crc: number } {
  return encodeEntryWithCrc(0, tag, address, data, dataCrc);
}

function encodeEntryWithCrc(kind: 0 | 1 | 2, tag: number, value: number, data?: Uint8Array, dataCrc?: number): { rec: Buffer; crc: number } {
  const dlen = data?.length ?? 0;
  const out = Buffer.allocUnsafe(ENTRY_HEAD + BODY_FIXED + dlen);
  out.writeUInt32LE(BODY_FIXED + dlen, 0);
  out.writeUInt8(kind, 8);
  out.writeUInt32LE(tag >>> 0, 9);
  out.writeDoubleLE(value, 13);
  if (data !== undefined) out.set(data, ENTRY_HEAD + BODY_FIXED);
  const fixed = crc32(out.subarray(ENTRY_HEAD, ENTRY_HEAD + BODY_FIXED));
  const body = dlen === 0 ? fixed >>> 0 : dataCrc === undefined ? crc32(data!, fixed) >>> 0 : crc32Join(fixed, dataCrc, dlen);
  out.writeUInt32LE(body, 4);
  return { rec: out, crc: crc32Join(crc32(out.subarray(0, ENTRY_HEAD)), body, BODY_FIXED + dlen) };
}

/** The tag of the sound entry record at `buf[pos..]` (check it first with entryLength). */
export function entryTag(buf: Buffer, pos: number): number {
  return buf.readUInt32LE(pos + 9);
}

/**
 * The length of the whole entry record at `buf[pos..]` if it is complete and sound, else a reason.
 * `complete: false` means the bytes end before the record does (a torn tail).
 */
export function entryLength(buf: Buffer, pos: number): { ok: true; length: number } | { ok: false; complete: boolean; reason: string } {
  return checkEntry(buf, pos);
}

/** entryLength, and the crc32 of the whole record when sound (derived from the body's: one pass over the data). */
function checkEntry(buf: Buffer, pos: number): { ok: true; length: number; crc: number } | { ok: false; complete: boolean; reason: string } {
  if (buf.length - pos < ENTRY_HEAD) return { ok: false, complete: false, reason: 'truncated entry header' };
  const body = buf.readUInt32LE(pos);
  if (body < BODY_FIXED || body > BODY_FIXED + MAX_ENTRY_DATA) return { ok: false, complete: true, reason: `bad entry length ${body}` };
  if (buf.length - pos < ENTRY_HEAD + body) return { ok: false, complete: false, reason: 'truncated entry' };
  const b = buf.subarray(pos + ENTRY_HEAD, pos + ENTRY_HEAD + body);
  const bodyCrc = crc32(b) >>> 0;
  if (bodyCrc !== buf.readUInt32LE(pos + 4)) return { ok: false, complete: true, reason: 'entry checksum mismatch' };
  const kind = b.readUInt8(0);
  if (kind > 2) return { ok: false, complete: true, reason: `unknown entry kind ${kind}` };
  const value = b.readDoubleLE(5);
  if (!Number.isSafeInteger(value) || value < 0) return { ok: false, complete: true, reason: 'bad entry value' };
  if (kind === 1 && body !== BODY_FIXED && body !== BODY_FIXED + 4) return { ok: false, complete: true, reason: 'resize entry with data' };
  if (kind === 2) {
    const count = body === BODY_FIXED + 12 ? b.readDoubleLE(BODY_FIXED) : -1;
    if (!Number.isSafeInteger(count) || count < 1) return { ok: false, complete: true, reason: 'bad discard entry' };
  }
  return { ok: true, length: ENTRY_HEAD + body, crc: crc32Join(crc32(buf.subarray(pos, pos + ENTRY_HEAD)), bodyCrc, body) };
}

/** Decodes a sound entry record (checked by entryLength). */
export function decodeEntry(buf: Buffer, pos: number, length: number): DtlEntry {
  const kind = buf.readUInt8(pos + 8);
  const tag = buf.readUInt32LE(pos + 9);
  const value = buf.readDoubleLE(pos + 13);
  if (kind === 2) {
    const d = pos + ENTRY_HEAD + BODY_FIXED;
    return { kind: 'discard', tag, first: value, count: buf.readDoubleLE(d), tlog: buf.readUInt32LE(d + 8) };
  }
  if (kind === 1) return { kind: 'resize', tag, size: value, tlog: length === ENTRY_HEAD + BODY_FIXED + 4 ? buf.readUInt32LE(pos + ENTRY_HEAD + BODY_FIXED) : 0 };
  return { kind: 'cluster', tag, address: value, data: buf.subarray(pos + ENTRY_HEAD + BODY_FIXED, pos + length) };
}

/** Splits a run of entry records (as in AddEntries or Entries). PROTOCOL on any damaged one. */
export function splitEntries(buf: Buffer, pos: number, count: number): Array<{ start: number; end: number; tag: number }> {
  const out: Array<{ start: number; end: number; tag: number }> = [];
  for (let i = 0; i < count; i++) {
    const r = entryLength(buf, pos);
    if (!r.ok) throw new DtlError('PROTOCOL', `entry ${i}: ${r.reason}`);
    out.push({ start: pos, end: pos + r.length, tag: entryTag(buf, pos) });
    pos += r.length;
  }
  if (pos !== buf.length) throw new DtlError('PROTOCOL', `${buf.length - pos} stray bytes after ${count} entries`);
  return out;
}

/**
 * The DTL server's check of an AddEntries frame (a FrameCheck, frame.ts): `bytes` is the frame before its
 * trailer, `want` the trailer. Every entry is read once, for its own checksum; the frame's checksum is
 * derived from those (crc32 combine) and the bytes around them, so the server reads each cluster once,
 * not twice (the wire format is unchanged). Returns where the entries start in the payload and their tags.
 * PROTOCOL on a bad frame; a frame whose plain checksum does not match is reported as such, whatever its
 * damaged bytes look like.
 */
export function checkAddEntriesFrame(bytes: Buffer, want: number): { at: number; tags: number[] } {
  const payload = bytes.subarray(HEADER_BYTES);
  try {
    const r = new Reader(payload);
    r.str();
    const count = r.u32();
    let crc = crc32(bytes.subarray(0, HEADER_BYTES + r.pos)) >>> 0;
    const tags: number[] = []; // (not new Array(count): count comes from the peer)
    let pos = r.pos;
    for (let i = 0; i < count; i++) {
      const e = checkEntry(payload, pos);
      if (!e.ok) throw new DtlError('PROTOCOL', `entry ${i}: ${e.reason}`);
      tags.push(entryTag(payload, pos));
      crc = crc32Join(crc, e.crc, e.length);
      pos += e.length;
    }
    if (pos !== payload.length) throw new DtlError('PROTOCOL', `${payload.length - pos} stray bytes after ${count} entries`);
    if (crc !== want) throw new DtlError('PROTOCOL', 'frame checksum mismatch');
    return { at: r.pos, tags };
  } catch (err) {
    if ((crc32(bytes) >>> 0) !== want) throw new DtlError('PROTOCOL', 'frame checksum mismatch');
    throw err;
  }
}

// ---- field codec --------------------------------------------------------------------------------------

export class Writer {
  private parts: Buffer[] = [];
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 0xffff) throw new DtlError('INVALID', 'string field over 65535 bytes');
    return this.u16(b.length).raw(b);
  }
  u8(n: number): this {
    const b = Buffer.allocUnsafe(1);
    b.writeUInt8(n);
    return this.raw(b);
  }
  u16(n: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16LE(n);
    return this.raw(b);
  }
  u32(n: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(n >>> 0);
    return this.raw(b);
  }
  f64(n: number): this {
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleLE(n);
    return this.raw(b);
  }
  raw(b: Uint8Array): this {
    this.parts.push(Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length));
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Reads fields; any read past the end is a PROTOCOL error (a truncated message). */
export class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new DtlError('PROTOCOL', `message truncated: need ${n} bytes at ${this.pos} of ${this.buf.length}`);
  }
  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.pos++);
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }
  str(): string {
    const n = this.u16();
    this.need(n);
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  end(): void {
    if (this.pos !== this.buf.length) throw new DtlError('PROTOCOL', `${this.buf.length - this.pos} stray bytes at the end of a message`);
  }
}

const VDISK_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A vDisk id as the server accepts it: it names a directory, so no path tricks. */
export function checkVdiskId(id: string): string {
  if (!VDISK_ID.test(id)) throw new DtlError('INVALID', `bad vDisk id ${JSON.stringify(id.slice(0, 140))}`);
  return id;
}
