/**
 * The byte layouts of the NBD protocol (all big-endian): what the server sends during the handshake, the
 * request header it decodes, and the simple and structured replies it encodes. Pure functions over
 * Buffers, tested against golden bytes (test/nbd-wire.test.ts); no I/O here.
 */
import {
  FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, INFO, NBDMAGIC, OPT_REPLY_MAGIC, REPLY_FLAG_DONE, REPLY_TYPE, REP,
  REQUEST_MAGIC, REQUEST_SIZE, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC,
} from './protocol.js';

/** The server's first 18 bytes: NBDMAGIC, IHAVEOPT, handshake flags (fixed newstyle, no zeroes). */
export function greeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  return b;
}

/** One option header from the client (16 bytes): magic, option, length of the data that follows. */
export interface OptionHeader {
  magicOk: boolean;
  option: number;
  length: number;
}

export function decodeOptionHeader(b: Buffer): OptionHeader {
  return { magicOk: b.readBigUInt64BE(0) === IHAVEOPT, option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

/** An option reply: magic, the option it answers, reply type, data length, data. */
export function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(OPT_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

/** An error reply to an option, with a human-readable message (UTF-8, what clients such as nbdinfo print). */
export function optionError(option: number, type: number, message: string): Buffer {
  return optionReply(option, type, Buffer.from(message, 'utf8'));
}

/** NBD_REP_INFO / NBD_INFO_EXPORT: size and transmission flags. */
export function infoExport(size: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(INFO.EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

/** NBD_REP_INFO / NBD_INFO_BLOCK_SIZE: minimum, preferred and maximum block size. */
export function infoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(INFO.BLOCK_SIZE, 0);
  b.writeUInt32BE(min, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(max, 10);
  return b;
}

/** NBD_REP_SERVER data: the export name, length-prefixed. */
export function repServer(name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  return b;
}

/** NBD_REP_META_CONTEXT data: the context id and its name. */
export function repMetaContext(id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(id, 0);
  n.copy(b, 4);
  return b;
}

/** What the server sends after a successful NBD_OPT_EXPORT_NAME: size, flags, 124 zeros unless NO_ZEROES. */
export function exportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

/** A decoded request header. `offset` is Infinity when it does not fit a safe integer (past any export). */
export interface Request {
  magicOk: boolean;
  flags: number;
  type: number;
  /** The client's opaque 8 bytes, echoed in every reply (hi and lo 32 bits). */
  cookieHi: number;
  cookieLo: number;
  offset: number;
  length: number;
}

/** Decodes the 28-byte request header at `at` of `b`. */
export function decodeRequest(b: Buffer, at = 0): Request {
  const hi = b.readUInt32BE(at + 16);
  const lo = b.readUInt32BE(at + 20);
  return {
    magicOk: b.readUInt32BE(at) === REQUEST_MAGIC,
    flags: b.readUInt16BE(at + 4),
    type: b.readUInt16BE(at + 6),
    cookieHi: b.readUInt32BE(at + 8),
    cookieLo: b.readUInt32BE(at + 12),
    offset: hi >= 2 ** 21 ? Infinity : hi * 2 ** 32 + lo,
    length: b.readUInt32BE(at + 24),
  };
}

/** Encodes a request header (the tests' client side). */
export function encodeRequest(r: { flags: number; type: number; cookie: bigint; offset: bigint | number; length: number }): Buffer {
  const b = Buffer.alloc(REQUEST_SIZE);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeBigUInt64BE(r.cookie, 8);
  b.writeBigUInt64BE(BigInt(r.offset), 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

export const SIMPLE_REPLY_SIZE = 16;
export const CHUNK_HEADER_SIZE = 20;

/** Writes a simple reply header (magic, error, cookie) at `at` of `b`. */
export function putSimpleReply(b: Buffer, at: number, error: number, req: Request): void {
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, at);
  b.writeUInt32BE(error, at + 4);
  b.writeUInt32BE(req.cookieHi, at + 8);
  b.writeUInt32BE(req.cookieLo, at + 12);
}

export function simpleReply(error: number, req: Request): Buffer {
  const b = Buffer.allocUnsafe(SIMPLE_REPLY_SIZE);
  putSimpleReply(b, 0, error, req);
  return b;
}

/** Writes a structured reply chunk header (magic, flags, type, cookie, payload length) at `at` of `b`. */
export function putChunkHeader(b: Buffer, at: number, flags: number, type: number, req: Request, length: number): void {
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
  b.writeUInt16BE(flags, at + 4);
  b.writeUInt16BE(type, at + 6);
  b.writeUInt32BE(req.cookieHi, at + 8);
  b.writeUInt32BE(req.cookieLo, at + 12);
  b.writeUInt32BE(length, at + 16);
}

/**
 * A READ reply of `length` data bytes as one structured OFFSET_DATA chunk (DONE): the header is filled in,
 * the data goes into the returned `data` view (the caller reads the vDisk straight into it).
 */
export function readChunk(req: Request, length: number): { frame: Buffer; data: Buffer } {
  const frame = Buffer.allocUnsafe(CHUNK_HEADER_SIZE + 8 + length);
  putChunkHeader(frame, 0, REPLY_FLAG_DONE, REPLY_TYPE.OFFSET_DATA, req, 8 + length);
  frame.writeUInt32BE(Math.floor(req.offset / 2 ** 32), CHUNK_HEADER_SIZE);
  frame.writeUInt32BE(req.offset % 2 ** 32, CHUNK_HEADER_SIZE + 4);
  return { frame, data: frame.subarray(CHUNK_HEADER_SIZE + 8) };
}

/** A READ reply as a simple reply (no structured replies negotiated): header then data. */
export function readSimple(req: Request, length: number): { frame: Buffer; data: Buffer } {
  const frame = Buffer.allocUnsafe(SIMPLE_REPLY_SIZE + length);
  putSimpleReply(frame, 0, 0, req);
  return { frame, data: frame.subarray(SIMPLE_REPLY_SIZE) };
}

/** The final chunk of a reply that carries nothing (NBD_REPLY_TYPE_NONE, DONE). */
export function noneChunk(req: Request): Buffer {
  const b = Buffer.allocUnsafe(CHUNK_HEADER_SIZE);
  putChunkHeader(b, 0, REPLY_FLAG_DONE, REPLY_TYPE.NONE, req, 0);
  return b;
}

/** An ERROR chunk (DONE): the error and a message for the client's log (cut to 4096 bytes). */
export function errorChunk(req: Request, error: number, message: string): Buffer {
  const m = Buffer.from(message, 'utf8').subarray(0, 4096);
  const b = Buffer.alloc(CHUNK_HEADER_SIZE + 6 + m.length);
  putChunkHeader(b, 0, REPLY_FLAG_DONE, REPLY_TYPE.ERROR, req, 6 + m.length);
  b.writeUInt32BE(error, CHUNK_HEADER_SIZE);
  b.writeUInt16BE(m.length, CHUNK_HEADER_SIZE + 4);
  m.copy(b, CHUNK_HEADER_SIZE + 6);
  return b;
}

/** One extent of a block status reply. */
export interface Extent {
  length: number;
  flags: number;
}

/** A BLOCK_STATUS chunk for one meta context; `done` on the last context's chunk. */
export function blockStatusChunk(req: Request, contextId: number, extents: Extent[], done: boolean): Buffer {
  const len = 4 + 8 * extents.length;
  const b = Buffer.allocUnsafe(CHUNK_HEADER_SIZE + len);
  putChunkHeader(b, 0, done ? REPLY_FLAG_DONE : 0, REPLY_TYPE.BLOCK_STATUS, req, len);
  b.writeUInt32BE(contextId, CHUNK_HEADER_SIZE);
  let at = CHUNK_HEADER_SIZE + 4;
  for (const e of extents) {
    b.writeUInt32BE(e.length, at);
    b.writeUInt32BE(e.flags, at + 4);
    at += 8;
  }
  return b;
}

/** The name of a reply type, for log lines. */
export function repName(type: number): string {
  return Object.entries(REP).find(([, v]) => v === type)?.[0] ?? String(type);
}
