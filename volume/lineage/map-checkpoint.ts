/**
 * Map checkpoints: a vDisk's state (cluster map, size, slot counts) as of a point of its TLog chain, stored
 * in the backend so that a rebuild from the backend (a takeover, a restart that lost its cache) loads it and
 * replays only the chain items after it — a time that no longer grows with the vDisk's history.
 *
 *   vdisks/<id>/checkpoint/<last item's TLog number, 16 hex>
 *
 * A checkpoint names exactly the chain it covers: the items (scrub segments and TLogs, ./chain.ts) as
 * ranges of numbers with the scrub id of the segments, and a running SHA-256 over their backend keys. It
 * counts for a rebuild only if the rebuild's own chain (the backend's doc, its fences, its listing) starts
 * with the very same items: a scrub that replaced TLogs (segment keys carry the scrub id), a rollback that
 * dropped some, a fence that excluded a zombie's late uploads all change that prefix, and the checkpoint is
 * then ignored (and garbage-collected by the next one written). A clone's checkpoint holds its inherited
 * entries (with their depth) too, and names the parent snapshot's uuid it was made under.
 *
 * Format (little-endian): "VPK1", u32 header length, header JSON (CheckpointHeader), u32 page count, per page
 * u32 page number and its 2048 u32 words (../datapath/formats/cluster-map.ts), u32 slot-count entries, per entry
 * u32 SCO and u32 count, then the SHA-256 of everything before it. A torn, truncated or altered object fails
 * the check and is ignored (logged); the BlobStore seam encrypts and authenticates it like every object.
 */
import { createHash } from 'node:crypto';
import { ClusterMap, PAGE_CLUSTERS } from '../datapath/formats/cluster-map.js';
import type { DiskState } from './clone-base.js';
import type { ChainItem, ChainDoc } from './chain.js';

const MAGIC = 0x314b5056; // "VPK1"
const PAGE_BYTES = PAGE_CLUSTERS * 8;

export const checkpointPrefix = (id: string): string => `vdisks/${id}/checkpoint/`;
export const checkpointKey = (id: string, lastEnd: number): string => `${checkpointPrefix(id)}${lastEnd.toString(16).padStart(16, '0')}`;

/** What a checkpoint covers and how it was made. */
export interface CheckpointHeader {
  version: 1;
  vdisk: string;
  /** How many chain items it covers (the first `items` of the chain). */
  items: number;
  /** The TLog number the last covered item ends at (a TLog, or the last TLog a segment replaced). */
  lastEnd: number;
  /** The covered items: the applied scrub's id and the segment ends it covers, then TLog number ranges. */
  scrub: { id: string; segments: number[] } | null;
  tlogRanges: Array<[number, number]>;
  /** Running SHA-256 (hex) over the covered items' keys (chainHashes). */
  chainHash: string;
  /** For a clone: the uuid of the parent snapshot its base was made from (null: not a clone). */
  parent: string | null;
  size: number;
  /** The highest own SCO number (below SCRUB_SCO_BASE) the covered records name: a rebuild numbers past it. */
  lastSco: number;
  /** The vDisk's fences (../datapath/formats/epoch-fence.ts) known when it was written: their epochs. */
  fenceEpochs: number[];
  router: string;
  /** Wall-clock ms when it was written. */
  at: number;
}

export interface Checkpoint {
  header: CheckpointHeader;
  state: DiskState;
}

/** A checkpoint found in the backend, and its key. */
export interface FoundCheckpoint {
  key: string;
  cp: Checkpoint;
}

/** h[k]: the hash of the first k items (h[0] names the vDisk). */
export function chainHashes(id: string, items: readonly ChainItem[]): string[] {
  let h = createHash('sha256').update(`vpoolfs map checkpoint chain of ${id}`).digest();
  const out = [h.toString('hex')];
  for (const item of items) {
    h = createHash('sha256').update(h).update(item.key).digest();
    out.push(h.toString('hex'));
  }
  return out;
}

/** chainHashes' value after `items` more, from `hash` (hex): a checkpoint's chainHash extended by the items after it. */
export function chainHashAfter(hash: string, items: readonly ChainItem[]): string {
  let h = Buffer.from(hash, 'hex');
  for (const item of items) h = createHash('sha256').update(h).update(item.key).digest();
  return h.toString('hex');
}

/**
 * describeItems of `prev`'s items followed by `after` (the chain items after it), from `prev`'s header alone
 * (null: no checkpoint before, `after` is the whole chain).
 */
export function describeAfter(doc: ChainDoc, prev: CheckpointHeader | null, after: readonly ChainItem[]): Pick<CheckpointHeader, 'scrub' | 'tlogRanges' | 'items' | 'lastEnd'> {
  const d = describeItems(doc, after);
  if (prev === null) return d;
  const segments = [...(prev.scrub?.segments ?? []), ...(d.scrub?.segments ?? [])];
  const ranges = prev.tlogRanges.map(([a, b]): [number, number] => [a, b]);
  for (const [a, b] of d.tlogRanges) {
    const last = ranges[ranges.length - 1];
    if (last !== undefined && last[1] + 1 === a) last[1] = b;
    else ranges.push([a, b]);
  }
  return {
    scrub: segments.length > 0 ? { id: doc.scrub!.id, segments } : null, tlogRanges: ranges,
    items: prev.items + after.length, lastEnd: after.length > 0 ? d.lastEnd : prev.lastEnd,
  };
}

/** The covered items as the header names them: segments (with the scrub id) and ranges of TLog numbers. */
export function describeItems(doc: ChainDoc, items: readonly ChainItem[]): Pick<CheckpointHeader, 'scrub' | 'tlogRanges' | 'items' | 'lastEnd'> {
  const segments = items.filter((i) => i.segment).map((i) => i.end);
  const ranges: Array<[number, number]> = [];
  for (const i of items) {
    if (i.segment) continue;
    const last = ranges[ranges.length - 1];
    if (last !== undefined && last[1] + 1 === i.end) last[1] = i.end;
    else ranges.push([i.end, i.end]);
  }
  return {
    scrub: segments.length > 0 ? { id: doc.scrub!.id, segments } : null,
    tlogRanges: ranges,
    items: items.length,
    lastEnd: items.length > 0 ? items[items.length - 1].end : 0,
  };
}

export function encodeCheckpoint(header: CheckpointHeader, s: DiskState): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const pages = [...s.map.rawPages()];
  const counts = [...s.scoCounts].sort((a, b) => a[0] - b[0]);
  const len = 8 + json.length + 4 + pages.length * (4 + PAGE_BYTES) + 4 + counts.length * 8 + 32;
  const buf = Buffer.alloc(len);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(json.length, 4);
  json.copy(buf, 8);
  let pos = 8 + json.length;
  buf.writeUInt32LE(pages.length, pos);
  pos += 4;
  for (const [pageNo, page] of pages) {
    buf.writeUInt32LE(pageNo, pos);
    Buffer.from(page.buffer, page.byteOffset, PAGE_BYTES).copy(buf, pos + 4);
    pos += 4 + PAGE_BYTES;
  }
  buf.writeUInt32LE(counts.length, pos);
  pos += 4;
  for (const [sco, count] of counts) {
    buf.writeUInt32LE(sco, pos);
    buf.writeUInt32LE(count, pos + 4);
    pos += 8;
  }
  createHash('sha256').update(buf.subarray(0, pos)).digest().copy(buf, pos);
  return buf;
}

/** Decodes a checkpoint object; throws an Error saying why it is not a sound one. */
export function decodeCheckpoint(buf: Buffer): Checkpoint {
  if (buf.length < 8 + 32 || buf.readUInt32LE(0) !== MAGIC) throw new Error('bad magic or too short');
  const end = buf.length - 32;
  if (!createHash('sha256').update(buf.subarray(0, end)).digest().equals(buf.subarray(end))) throw new Error('checksum mismatch (torn or altered)');
  const jsonLen = buf.readUInt32LE(4);
  let pos = 8 + jsonLen;
  if (pos + 4 > end) throw new Error('bad header length');
  const header = JSON.parse(buf.subarray(8, pos).toString('utf8')) as CheckpointHeader;
  if (header.version !== 1) throw new Error(`unknown version ${String(header.version)}`);
  const map = new ClusterMap();
  const nPages = buf.readUInt32LE(pos);
  pos += 4;
  if (pos + nPages * (4 + PAGE_BYTES) + 4 > end) throw new Error('bad page count');
  for (let i = 0; i < nPages; i++, pos += 4 + PAGE_BYTES) {
    const words = new Uint32Array(PAGE_CLUSTERS * 2);
    Buffer.from(words.buffer).set(buf.subarray(pos + 4, pos + 4 + PAGE_BYTES));
    map.loadPage(buf.readUInt32LE(pos), words);
  }
  const nCounts = buf.readUInt32LE(pos);
  pos += 4;
  if (pos + nCounts * 8 !== end) throw new Error('bad length');
  const scoCounts = new Map<number, number>();
  for (let i = 0; i < nCounts; i++, pos += 8) scoCounts.set(buf.readUInt32LE(pos), buf.readUInt32LE(pos + 4));
  return { header, state: { map, size: header.size, scoCounts } };
}

/**
 * Why checkpoint `h` does not fit the chain `items` of vDisk `id` (doc `doc`), or null when it does: it
 * covers exactly the first h.items items. `hashes`: chainHashes(id, items).
 */
export function mismatch(h: CheckpointHeader, id: string, doc: ChainDoc, items: readonly ChainItem[], hashes: readonly string[]): string | null {
  if (h.vdisk !== id) return `it is vDisk ${h.vdisk}'s`;
  if (h.parent !== (doc.parent?.uuid ?? null)) return 'made under another clone parent';
  if (h.items > items.length) return `it covers ${h.items} chain items, the chain has ${items.length} now`;
  if (hashes[h.items] !== h.chainHash) return 'the chain it covers is no longer the backend\'s (a scrub, a rollback or a fence changed it)';
  const d = describeItems(doc, items.slice(0, h.items));
  if (JSON.stringify([d.scrub, d.tlogRanges, d.lastEnd]) !== JSON.stringify([h.scrub, h.tlogRanges, h.lastEnd])) return 'its chain description differs from the chain';
  return null;
}
