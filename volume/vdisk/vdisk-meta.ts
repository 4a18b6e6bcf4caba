/**
 * A vDisk's records in the metadata store (mds/):
 *
 *   vd/<id>/meta        JSON {corkedTlog, corkedSco, size, template}: the TLogs up to corkedTlog are in the
 *                       backend and reflected in the persisted map; so are the SCOs up to corkedSco
 *   vd/<id>/map/<page>  a cluster-map page (../datapath/formats/cluster-map.ts), 8 KiB
 *   vd/<id>/sco/<n>     u32 slot count of SCO n (to read it back from the backend once evicted)
 *
 * The persisted map may be newer than corkedTlog (it is written whole at each cork); replaying the local
 * TLogs after corkedTlog over it is still right, because replay is last-writer-wins in log order.
 */
import type { MetadataOp, MetadataStore } from '../../mds/types.js';
import { PAGE_CLUSTERS } from '../datapath/formats/cluster-map.js';
import type { PendingTlog } from '../datapath/upload/uploader.js';
import { scoName } from '../datapath/formats/sco-format.js';
import { SCRUB_SCO_BASE } from '../lineage/scrub-state.js';

export interface VDiskMeta {
  corkedTlog: number;
  corkedSco: number;
  size: number;
  template: boolean;
}

export const metaKey = (id: string): string => `vd/${id}/meta`;
export const mapPrefix = (id: string): string => `vd/${id}/map/`;
export const scoCountPrefix = (id: string): string => `vd/${id}/sco/`;
export const vdiskMdsPrefix = (id: string): string => `vd/${id}/`;
/**
 * Set by the rebuild after a host loss (in the same commit) and removed once the DTL recovery is done: a
 * crash in between must not make the next start a local restart, which would never replay the DTL (and
 * whose catch-up would then replace the server's copy with the local history, losing the rest).
 */
export const dtlRecoveryKey = (id: string): string => `vd/${id}/dtl-recovery`;

/** What a cork reads of a vDisk (VDiskImpl). */
export interface CorkSource {
  id: string;
  size: number;
  template: boolean;
  corkedSco: number;
  map: { takeDirty(): Array<[number, Uint32Array | null]>; markDirty(pageNos: Iterable<number>): void };
  scoCounts: Map<number, number>;
}

/** The operations that persist a vDisk's map and bookkeeping once TLog `p` is in the backend. */
export function corkOps(v: CorkSource, p: PendingTlog): MetadataOp[] {
  const ops: MetadataOp[] = [];
  for (const [pageNo, page] of v.map.takeDirty()) {
    ops.push({ key: mapPrefix(v.id) + pageNo.toString(16).padStart(8, '0'), value: page === null ? null : pageBytes(page) });
  }
  for (const sco of p.scos) {
    const count = v.scoCounts.get(sco);
    if (count !== undefined) ops.push({ key: scoCountPrefix(v.id) + scoName(sco), value: u32(count) });
  }
  // scrub SCOs (numbered from SCRUB_SCO_BASE, lineage/scrub-state.ts) are not the owner's: they never move its cork point
  const own = p.scos.filter((s) => s < SCRUB_SCO_BASE);
  const meta: VDiskMeta = { corkedTlog: p.tlog, corkedSco: Math.max(v.corkedSco, ...own.slice(-1)), size: v.size, template: v.template };
  ops.push({ key: metaKey(v.id), value: Buffer.from(JSON.stringify(meta)) });
  return ops;
}

/**
 * Commits `ops` (from corkOps, plus any extra) and, if that (or `before`, run first) fails, gives the map
 * pages they carried back to the dirty set: the next cork writes them. Without this a failed commit
 * (ENOSPC, EIO) would drop them and the retry would cork without them.
 */
export async function commitCork(mds: MetadataStore, v: CorkSource, ops: MetadataOp[], before?: () => Promise<void>): Promise<void> {
  try {
    if (before !== undefined) await before();
    await mds.commit(ops);
  } catch (err) {
    const prefix = mapPrefix(v.id);
    v.map.markDirty(ops.filter((o) => o.key.startsWith(prefix)).map((o) => parseInt(o.key.slice(prefix.length), 16)));
    throw err;
  }
}

export function pageBytes(page: Uint32Array): Buffer {
  return Buffer.from(page.buffer.slice(page.byteOffset, page.byteOffset + PAGE_CLUSTERS * 8));
}

export function pageWords(buf: Buffer): Uint32Array {
  const copy = new Uint8Array(buf); // aligned copy
  return new Uint32Array(copy.buffer, 0, PAGE_CLUSTERS * 2);
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
