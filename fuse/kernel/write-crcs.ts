/**
 * The crc32 of each whole cluster of a WRITE, computed in the reader thread that read the request and
 * carried to the main thread with it, where the slot headers combine them instead of reading the data again
 * (volume/datapath/write-cache/known-crcs.ts, sco-format.ts): the main thread is the one that serialises every write,
 * the readers wait in read(2) most of the time.
 *
 * The crcs travel in the request's own buffer, after its bytes (4-aligned): no second message, no second
 * buffer. A read buffer has room for them behind the largest WRITE (READ_BUFFER_SIZE = MAX_WRITE + 4 KiB,
 * 256 crcs take 1 KiB); a copied small request is cut to include them. The message says where (`crcAt`,
 * 0: none): a WRITE with no whole cluster, a malformed one, anything else.
 */
import { crc32 } from 'node:zlib';
import { noteClusterCrcs } from '../../volume/datapath/write-cache/known-crcs.js';
import { CLUSTER_SIZE } from '../../volume/types.js';
import { SIZE } from './protocol.js';

const H = SIZE.IN_HEADER;
const DATA = H + SIZE.WRITE_IN;

/** Where a WRITE's first whole cluster starts in the request and how many whole clusters it holds. */
function wholeClusters(req: Buffer, n: number): { first: number; count: number } {
  if (n < DATA) return { first: 0, count: 0 };
  const offset = req.readUInt32LE(H + 8) + req.readUInt32LE(H + 12) * 0x100000000;
  const size = req.readUInt32LE(H + 16);
  if (DATA + size > n) return { first: 0, count: 0 };
  const lead = (CLUSTER_SIZE - (offset % CLUSTER_SIZE)) % CLUSTER_SIZE;
  const count = size > lead ? Math.floor((size - lead) / CLUSTER_SIZE) : 0;
  return { first: DATA + lead, count };
}

/**
 * Reader side: writes the crcs of the whole clusters of the WRITE in `buf[0..n)` behind it, in `buf`.
 * Returns the byte offset where they start (the length of the message to send is then crcAt + 4·count),
 * or 0 when there are none or no room.
 */
export function computeWriteCrcs(buf: Buffer, n: number): number {
  const { first, count } = wholeClusters(buf, n);
  if (count === 0) return 0;
  const at = (n + 3) & ~3;
  if (at + count * 4 > buf.length || (buf.byteOffset + at) % 4 !== 0) return 0;
  // a native-order view, as the main thread reads them (same host)
  const crcs = new Uint32Array(buf.buffer, buf.byteOffset + at, count);
  for (let i = 0; i < count; i++) {
    const from = first + i * CLUSTER_SIZE;
    crcs[i] = crc32(buf.subarray(from, from + CLUSTER_SIZE));
  }
  return at;
}

/** The bytes a request with crcs at `crcAt` occupies (what a copied small request must keep). */
export function withCrcsLength(buf: Buffer, n: number, crcAt: number): number {
  return crcAt === 0 ? n : crcAt + wholeClusters(buf, n).count * 4;
}

/** Main side: records the crcs that came with request `req` (its buffer) for the volume layer. */
export function adoptWriteCrcs(req: Buffer, crcAt: number): void {
  const { first, count } = wholeClusters(req, req.length);
  if (count === 0 || crcAt + count * 4 > req.buffer.byteLength || (req.byteOffset + crcAt) % 4 !== 0) return;
  noteClusterCrcs(req.buffer, req.byteOffset + first, new Uint32Array(req.buffer, req.byteOffset + crcAt, count));
}
