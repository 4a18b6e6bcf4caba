/**
 * The TLog (transaction log) format. A TLog is a sequence of records, each framed and checksummed:
 *
 *   u32 length of the body, u32 crc32 of the body, body = u8 type + payload
 *
 * Records (all integers little-endian):
 *   HEADER     vdisk id (utf-8, length-prefixed u16), u32 TLog number
 *   SCO        u32 SCO number, u32 slot count, u32 crc32 of the SCO's slot headers (each header holds
 *              the crc32 of its data, so this covers every byte), then per slot the cluster
 *              address as f64 — the cluster-map entries (address → SCO, slot) that SCO carries
 *   RESIZE     f64 new size in bytes
 *   DISCARD    f64 first cluster address, f64 cluster count: those clusters read as zeros from here on
 *              (a guest's TRIM, fallocate PUNCH_HOLE / ZERO_RANGE, NBD TRIM / WRITE_ZEROES)
 *
 * Order of a DISCARD with the writes around it: a SCO's record is appended only when the SCO closes, so
 * a discard of a cluster whose newest write still sits in the open SCO first closes that SCO (its record
 * comes before the DISCARD: replay maps the write, then clears it). When the open SCO holds none of the
 * discarded clusters it stays open: the writes it holds are of other clusters (order does not matter) or
 * come after the discard (replayed after it, as they should be). So frequent guest TRIMs of long-free
 * blocks cost no SCO fragmentation; a TRIM of just-written blocks closes a short SCO.
 * A reader of the log (replay, scrubber) clears the cluster-map entries of the range: the slots they
 * pointed at are garbage, exactly like overwritten ones; in a clone the entries of the parent's clusters
 * are cleared too (the clone reads zeros there: its map holds its base, there is no fall-through).
 *
 * The open TLog of a vDisk is its local journal: records are appended as events happen (an SCO closing,
 * a resize). Closed, it is uploaded after the SCOs it names. Replaying all TLogs in order rebuilds the
 * cluster map and the size. A record whose checksum fails ends a local journal (a torn tail after a
 * crash); in a closed or uploaded TLog it is corruption.
 */
import { crc32 } from 'node:zlib';

export const enum RecordType {
  Header = 1,
  Sco = 2,
  Resize = 3,
  Discard = 4,
}

export type TLogRecord =
  | { type: RecordType.Header; vdiskId: string; tlog: number }
  | { type: RecordType.Sco; sco: number; count: number; crc: number; addresses: Float64Array }
  | { type: RecordType.Resize; size: number }
  | { type: RecordType.Discard; first: number; count: number };

export function encodeRecord(rec: TLogRecord): Buffer {
  let body: Buffer;
  switch (rec.type) {
    case RecordType.Header: {
      const id = Buffer.from(rec.vdiskId, 'utf8');
      body = Buffer.alloc(1 + 2 + id.length + 4);
      body.writeUInt16LE(id.length, 1);
      id.copy(body, 3);
      body.writeUInt32LE(rec.tlog, 3 + id.length);
      break;
    }
    case RecordType.Sco: {
      body = Buffer.alloc(1 + 12 + rec.count * 8);
      body.writeUInt32LE(rec.sco, 1);
      body.writeUInt32LE(rec.count, 5);
      body.writeUInt32LE(rec.crc, 9);
      for (let i = 0; i < rec.count; i++) body.writeDoubleLE(rec.addresses[i], 13 + i * 8);
      break;
    }
    case RecordType.Resize:
      body = Buffer.alloc(9);
      body.writeDoubleLE(rec.size, 1);
      break;
    case RecordType.Discard:
      body = Buffer.alloc(17);
      body.writeDoubleLE(rec.first, 1);
      body.writeDoubleLE(rec.count, 9);
      break;
  }
  body[0] = rec.type;
  const frame = Buffer.alloc(8 + body.length);
  frame.writeUInt32LE(body.length, 0);
  frame.writeUInt32LE(crc32(body) >>> 0, 4);
  body.copy(frame, 8);
  return frame;
}

export interface DecodeResult {
  records: TLogRecord[];
  /** Bytes of `buf` holding whole, sound records. */
  validBytes: number;
  /** Why decoding stopped before the end, or null when every byte was a sound record. */
  error: string | null;
}

export function decodeRecords(buf: Buffer): DecodeResult {
  const records: TLogRecord[] = [];
  let pos = 0;
  while (pos < buf.length) {
    if (buf.length - pos < 8) return { records, validBytes: pos, error: 'truncated frame header' };
    const len = buf.readUInt32LE(pos);
    const crc = buf.readUInt32LE(pos + 4);
    if (len < 1 || len > buf.length - pos - 8) return { records, validBytes: pos, error: 'truncated or oversized record' };
    const body = buf.subarray(pos + 8, pos + 8 + len);
    if ((crc32(body) >>> 0) !== crc) return { records, validBytes: pos, error: 'record checksum mismatch' };
    const rec = decodeBody(body);
    if (typeof rec === 'string') return { records, validBytes: pos, error: rec };
    records.push(rec);
    pos += 8 + len;
  }
  return { records, validBytes: pos, error: null };
}

function decodeBody(body: Buffer): TLogRecord | string {
  switch (body[0]) {
    case RecordType.Header: {
      if (body.length < 3) return 'bad header record';
      const n = body.readUInt16LE(1);
      if (body.length !== 3 + n + 4) return 'bad header record';
      return { type: RecordType.Header, vdiskId: body.toString('utf8', 3, 3 + n), tlog: body.readUInt32LE(3 + n) };
    }
    case RecordType.Sco: {
      if (body.length < 13) return 'bad SCO record';
      const count = body.readUInt32LE(5);
      if (body.length !== 13 + count * 8) return 'bad SCO record';
      const addresses = new Float64Array(count);
      for (let i = 0; i < count; i++) addresses[i] = body.readDoubleLE(13 + i * 8);
      return { type: RecordType.Sco, sco: body.readUInt32LE(1), count, crc: body.readUInt32LE(9), addresses };
    }
    case RecordType.Resize:
      if (body.length !== 9) return 'bad resize record';
      return { type: RecordType.Resize, size: body.readDoubleLE(1) };
    case RecordType.Discard: {
      if (body.length !== 17) return 'bad discard record';
      const first = body.readDoubleLE(1);
      const count = body.readDoubleLE(9);
      if (!Number.isSafeInteger(first) || first < 0 || !Number.isSafeInteger(count) || count < 1) return 'bad discard record';
      return { type: RecordType.Discard, first, count };
    }
    default:
      return `unknown record type ${body[0]}`;
  }
}

export function tlogName(tlog: number): string {
  return tlog.toString(16).padStart(8, '0');
}
