/**
 * The state of a vDisk as of one of its TLogs, rebuilt from the backend, and the "base" of a clone.
 *
 * A clone starts with its parent's cluster map as of the snapshot, every entry one clone depth deeper
 * (depth k reads the namespace of the k-th ancestor). That map and the size are its base, stored once in
 * the backend (`vdisks/<clone>/base`) when the clone is made; the clone's own TLogs replay over it. So the
 * state of any vDisk at TLog T is: its base (if a clone), then its own TLogs up to T that were not dropped
 * by a rollback (or the segments of a scrub in place of the TLogs it replaced: stateAt in ./chain.ts).
 *
 * Base format (little-endian): "VPB1", f64 size, u32 page count, then per page u32 page number and the
 * page's 2048 u32 words (../datapath/formats/cluster-map.ts), then u32 crc32 of everything before it.
 */
import { crc32 } from 'node:zlib';
import { VolumeError } from '../../util/errors.js';
import type { BlobStore } from '../backend/types.js';
import { ClusterMap, PAGE_CLUSTERS } from '../datapath/formats/cluster-map.js';
import { RecordType, type TLogRecord } from '../datapath/formats/tlog-format.js';
import { CLUSTER_SIZE } from '../types.js';

const MAGIC = 0x31425056; // "VPB1"
export const baseKey = (id: string): string => `vdisks/${id}/base`;
/** The deepest clone chain (the cluster map keeps the depth in 8 bits). */
export const MAX_CLONE_DEPTH = 255;

export interface DiskState {
  map: ClusterMap;
  size: number;
  scoCounts: Map<number, number>;
}

/** Applies one TLog record to `s`: every replay of TLogs into a map (VDiskImpl.applyRecord and stateAt in ./chain.ts) goes through here. */
export function applyTo(s: DiskState, rec: TLogRecord): void {
  if (rec.type === RecordType.Sco) {
    for (let i = 0; i < rec.count; i++) if (rec.addresses[i] >= 0) s.map.set(rec.addresses[i], rec.sco, i);
    s.scoCounts.set(rec.sco, rec.count);
  } else if (rec.type === RecordType.Resize) {
    s.map.clearFrom(Math.ceil(rec.size / CLUSTER_SIZE));
    s.size = rec.size;
  } else if (rec.type === RecordType.Discard) {
    // in a clone this clears the parent's clusters as well: they read as zeros (no fall-through to the parent)
    s.map.clearRange(rec.first, rec.count);
  }
}

export function encodeBase(map: ClusterMap, size: number): Buffer {
  const pages: Array<[number, Uint32Array]> = [];
  for (const [pageNo, page] of map.takeDirty()) if (page !== null) pages.push([pageNo, page]);
  const buf = Buffer.alloc(16 + pages.length * (4 + PAGE_CLUSTERS * 8) + 4);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeDoubleLE(size, 4);
  buf.writeUInt32LE(pages.length, 12);
  let pos = 16;
  for (const [pageNo, page] of pages) {
    buf.writeUInt32LE(pageNo, pos);
    Buffer.from(page.buffer, page.byteOffset, PAGE_CLUSTERS * 8).copy(buf, pos + 4);
    pos += 4 + PAGE_CLUSTERS * 8;
  }
  buf.writeUInt32LE(crc32(buf.subarray(0, pos)) >>> 0, pos);
  return buf;
}

/** Loads a base into `s` (its map must be empty). CHECKSUM if the object is damaged. */
export function decodeBaseInto(buf: Buffer, s: DiskState, where: string): void {
  const bad = (why: string): VolumeError => new VolumeError('CHECKSUM', `the clone base ${where} is damaged: ${why}`, { object: where });
  if (buf.length < 20 || buf.readUInt32LE(0) !== MAGIC) throw bad('bad magic');
  const n = buf.readUInt32LE(12);
  const end = 16 + n * (4 + PAGE_CLUSTERS * 8);
  if (buf.length !== end + 4) throw bad('bad length');
  if ((crc32(buf.subarray(0, end)) >>> 0) !== buf.readUInt32LE(end)) throw bad('checksum mismatch');
  s.size = buf.readDoubleLE(4);
  for (let i = 0, pos = 16; i < n; i++, pos += 4 + PAGE_CLUSTERS * 8) {
    const first = buf.readUInt32LE(pos) * PAGE_CLUSTERS;
    for (let k = 0; k < PAGE_CLUSTERS; k++) {
      const sco = buf.readUInt32LE(pos + 4 + k * 8);
      if (sco === 0) continue;
      const w1 = buf.readUInt32LE(pos + 8 + k * 8);
      s.map.set(first + k, sco, w1 & 0xffff, (w1 >>> 16) & 0xff); // set, not loadPage: the pages must be persisted
    }
  }
}

/** Loads the base of clone `id` from the backend into `s`. */
export async function loadBase(backend: BlobStore, id: string, s: DiskState): Promise<void> {
  decodeBaseInto(await backend.get(baseKey(id)), s, baseKey(id));
}

/** The base of a clone of a vDisk whose state is `parent`: every entry one depth deeper. */
export function cloneBase(parent: DiskState): Buffer {
  const m = new ClusterMap();
  for (const [a, loc] of parent.map.entries()) {
    if (loc.depth + 1 > MAX_CLONE_DEPTH) throw new VolumeError('INVALID', `clone depth limit ${MAX_CLONE_DEPTH} reached`, { depth: loc.depth + 1 });
    m.set(a, loc.sco, loc.slot, loc.depth + 1);
  }
  return encodeBase(m, parent.size);
}
