/**
 * The DTL wire frame. Every message, both ways, is one frame (integers little-endian):
 *
 *   0  u16 magic 0x4454 ('DT')      4  u32 request id (a reply carries the id of its request)
 *   2  u8  version (1)              8  u32 payload length (at most MAX_PAYLOAD)
 *   3  u8  message type             12 payload, then u32 crc32 (zlib, IEEE) of bytes 0 .. 12+length
 *
 * A frame with a wrong magic, version, checksum or a length over MAX_PAYLOAD is a PROTOCOL error: the
 * receiver drops that connection (and only that one). The decoder never buffers more than one frame.
 * The router link (router-link/) uses the same frame with its own magic ('RL'), so that neither end mistakes
 * the other protocol for its own.
 */
import { crc32 } from 'node:zlib';
import { crc32Join } from '../util/crc32-combine.js';
import { DtlError } from './errors.js';

export const MAGIC = 0x4454;
export const VERSION = 1;
export const HEADER_BYTES = 12;
export const TRAILER_BYTES = 4;
/** 4 MiB of entries plus room for the request's own fields. */
export const MAX_PAYLOAD = 4 * 2 ** 20 + 4096;

export const enum Msg {
  Hello = 1,
  Auth = 2,
  AuthOk = 3,
  Register = 10,
  AddEntries = 11,
  Flush = 12,
  GetEntries = 13,
  GetScoRange = 14,
  RemoveUpTo = 15,
  Clear = 16,
  Unregister = 17,
  /** A new owner's recovery: raises the vDisk's fence (fence.ts) without registering it. */
  Fence = 18,
  Reply = 0x80,
  Entries = 0x81,
}

export interface Frame {
  type: number;
  id: number;
  payload: Buffer;
  /** What a FrameCheck of this type returned (the frame was verified by it instead of a plain crc32 pass). */
  checked?: unknown;
}

/**
 * A receiver's own verification of one message type, in place of the decoder's crc32 pass over the frame:
 * given the frame's bytes before the trailer and the trailer's checksum, it must throw PROTOCOL unless
 * crc32(bytes) === want, and may return what it parsed meanwhile (Frame.checked). The DTL server checks
 * AddEntries this way (messages.ts, checkAddEntriesFrame): it reads each entry once, for the entry's own
 * checksum, and derives the frame's from those (same bytes on the wire, one pass instead of two).
 */
export type FrameCheck = (bytes: Buffer, want: number) => unknown;

export function encodeFrame(type: number, id: number, payload: Uint8Array, magic = MAGIC): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new DtlError('INVALID', `a frame payload of ${payload.length} bytes is over the limit of ${MAX_PAYLOAD}`);
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length + TRAILER_BYTES);
  out.writeUInt16LE(magic, 0);
  out.writeUInt8(VERSION, 2);
  out.writeUInt8(type, 3);
  out.writeUInt32LE(id >>> 0, 4);
  out.writeUInt32LE(payload.length, 8);
  out.set(payload, HEADER_BYTES);
  out.writeUInt32LE(crc32(out.subarray(0, HEADER_BYTES + payload.length)) >>> 0, HEADER_BYTES + payload.length);
  return out;
}

/**
 * The same frame as encodeFrame, as pieces to write in a row (header, the payload's parts, trailer): no copy
 * of the payload. `crcs[i]`, when given, is the crc32 of `parts[i]`, already known (a DTL entry record's,
 * bridge.ts): it is combined into the frame's checksum instead of reading the part again.
 */
export function encodeFrameParts(type: number, id: number, parts: Buffer[], magic = MAGIC, crcs?: ReadonlyArray<number | undefined>): Buffer[] {
  let length = 0;
  for (const p of parts) length += p.length;
  if (length > MAX_PAYLOAD) throw new DtlError('INVALID', `a frame payload of ${length} bytes is over the limit of ${MAX_PAYLOAD}`);
  const head = Buffer.allocUnsafe(HEADER_BYTES);
  head.writeUInt16LE(magic, 0);
  head.writeUInt8(VERSION, 2);
  head.writeUInt8(type, 3);
  head.writeUInt32LE(id >>> 0, 4);
  head.writeUInt32LE(length, 8);
  let crc = crc32(head);
  for (let i = 0; i < parts.length; i++) {
    const known = crcs?.[i];
    crc = known === undefined ? crc32(parts[i], crc) : crc32Join(crc, known, parts[i].length);
  }
  const trailer = Buffer.allocUnsafe(TRAILER_BYTES);
  trailer.writeUInt32LE(crc >>> 0, 0);
  return [head, ...parts, trailer];
}

/** Splits a byte stream into verified frames. Throws PROTOCOL on the first bad frame (then it is useless). */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** `magic`: the protocol's (the DTL's by default); `checks`: message types verified by the receiver's own FrameCheck. */
  constructor(private readonly magic = MAGIC, private readonly checks?: ReadonlyMap<number, FrameCheck>) {}

  /** Adds bytes; returns the frames now complete, in order. Throws on a bad frame (the sound frames before it in `chunk` are lost: see pushSome). */
  push(chunk: Buffer): Frame[] {
    const { frames, error } = this.pushSome(chunk);
    if (error !== null) throw error;
    return frames;
  }

  /**
   * Adds bytes; returns the frames now complete, in order, and the error of the first bad frame after
   * them (then the decoder is useless). The sound frames before a bad one count whether they came in
   * the same read or not: what a receiver does must not depend on how TCP cut the stream.
   */
  pushSome(chunk: Buffer): { frames: Frame[]; error: DtlError | null } {
    const frames: Frame[] = [];
    try {
      this.decode(chunk, frames);
      return { frames, error: null };
    } catch (err) {
      return { frames, error: err as DtlError };
    }
  }

  private decode(chunk: Buffer, out: Frame[]): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.buffered < HEADER_BYTES) return;
      const head = this.peek(HEADER_BYTES);
      const magic = head.readUInt16LE(0);
      if (magic !== this.magic) throw new DtlError('PROTOCOL', `bad frame magic 0x${magic.toString(16)}`);
      const version = head.readUInt8(2);
      if (version !== VERSION) throw new DtlError('PROTOCOL', `unsupported protocol version ${version} (this side speaks ${VERSION})`);
      const length = head.readUInt32LE(8);
      if (length > MAX_PAYLOAD) throw new DtlError('PROTOCOL', `frame of ${length} bytes is over the limit of ${MAX_PAYLOAD}`);
      const total = HEADER_BYTES + length + TRAILER_BYTES;
      if (this.buffered < total) return;
      const bytes = this.take(total);
      const want = bytes.readUInt32LE(HEADER_BYTES + length);
      const type = bytes.readUInt8(3);
      const check = this.checks?.get(type);
      let checked: unknown;
      if (check !== undefined) checked = check(bytes.subarray(0, HEADER_BYTES + length), want);
      else if ((crc32(bytes.subarray(0, HEADER_BYTES + length)) >>> 0) !== want) throw new DtlError('PROTOCOL', 'frame checksum mismatch');
      const frame: Frame = { type, id: bytes.readUInt32LE(4), payload: bytes.subarray(HEADER_BYTES, HEADER_BYTES + length) };
      if (check !== undefined) frame.checked = checked;
      out.push(frame);
    }
  }

  /** Bytes received that do not form a whole frame yet. */
  get pending(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    this.gather(n);
    return this.chunks[0].subarray(0, n);
  }

  /** Makes the first chunk at least `n` bytes long (n <= buffered), joining only the chunks needed. */
  private gather(n: number): void {
    if (this.chunks[0].length >= n) return;
    let k = 0;
    let got = 0;
    while (got < n) got += this.chunks[k++].length;
    this.chunks.splice(0, k, Buffer.concat(this.chunks.slice(0, k), got));
  }

  private take(n: number): Buffer {
    this.gather(n);
    const first = this.chunks[0];
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return out;
  }
}
