/**
 * The vDisk's part of applying a scrub (VDiskImpl.applyScrub, under the vDisk's lock; docs/scrubbing.md):
 * move the live map (`relocate`), then persist the moved map pages, the slot counts of the new SCOs and the new doc in one
 * metadata commit (after an fdatasync of the write cache, as a cork does: the pages may also carry entries
 * of writes not yet corked). If the commit fails, the map is moved back and nothing changed.
 */
import type { MetadataOp } from '../../mds/types.js';
import type { ClusterMap } from '../datapath/formats/cluster-map.js';
import type { ReaderView } from '../datapath/write-cache/reader-view.js';
import { scoName } from '../datapath/formats/sco-format.js';
import type { ChainDoc } from '../lineage/chain.js';
import type { ScoRange } from '../lineage/scrub-state.js';
import type { LocalCache } from '../datapath/write-cache/local-cache.js';
import type { DocStore } from '../lineage/snapshot-store.js';
import type { VDiskContext } from './vdisk-context.js';
import { commitCork, mapPrefix, pageBytes, scoCountPrefix, u32, type CorkSource } from './vdisk-meta.js';

/** What applying a scrub changes of a vDisk (VDiskImpl, vdisk.ts, which calls this under its lock). */
export interface ScrubTarget extends CorkSource {
  readonly map: ClusterMap;
  /** The reader threads' view: moving the map is a change they must not read across (reader-view.ts). */
  readonly readerView: ReaderView;
  readonly docs: DocStore;
  readonly cache: LocalCache;
  readonly ctx: VDiskContext;
  /** Scrub SCO ranges seen in any doc (VDiskImpl.scoKeyOf): kept so reads planned around the apply find their keys. */
  readonly seenScoRanges: ScoRange[];
}

export async function applyScrubTo(v: ScrubTarget, next: ChainDoc, newScos: Array<[number, number]>, rel: Float64Array): Promise<number> {
  // reads planned on the moved map find the new SCOs' keys before the doc switches (VDiskImpl.scoKeyOf)
  for (const r of [...(v.docs.doc.scrub?.scoRanges ?? []), ...(next.scrub?.scoRanges ?? [])]) {
    if (!v.seenScoRanges.some((x) => x.from === r.from && x.scrub === r.scrub)) v.seenScoRanges.push(r);
  }
  const { moved, undo } = v.readerView.change(() => relocate(v.map, rel));
  for (const [sco, count] of newScos) v.scoCounts.set(sco, count);
  const ops: MetadataOp[] = [];
  for (const [pageNo, page] of v.map.takeDirty()) ops.push({ key: mapPrefix(v.id) + pageNo.toString(16).padStart(8, '0'), value: page === null ? null : pageBytes(page) });
  for (const [sco, count] of newScos) ops.push({ key: scoCountPrefix(v.id) + scoName(sco), value: u32(count) });
  ops.push(...v.docs.ops(next));
  try {
    await commitCork(v.ctx.mds, v, ops, () => v.cache.syncLocal());
  } catch (err) {
    v.readerView.change(undo);
    for (const [sco] of newScos) v.scoCounts.delete(sco);
    throw err;
  }
  v.docs.doc = next; // shipped by the next DocStore.flush (the caller waits for it before sweeping)
  return moved; // VDiskImpl.applyScrub counts the new SCOs' bytes in the backend
}

/**
 * Moves the map's own entries (depth 0) per `rel` (address, old SCO, old slot, new SCO, new slot), each
 * only where the map still points at the old slot (a newer write wins). Synchronous: no read or write
 * interleaves. Returns the undo (puts back exactly what it moved).
 */
export function relocate(map: ClusterMap, rel: Float64Array): { moved: number; undo: () => void } {
  const done: number[] = [];
  for (let i = 0; i < rel.length; i += 5) {
    const a = rel[i];
    const loc = map.get(a);
    if (loc === null || loc.depth !== 0 || loc.sco !== rel[i + 1] || loc.slot !== rel[i + 2]) continue;
    map.set(a, rel[i + 3], rel[i + 4], 0);
    done.push(i);
  }
  return {
    moved: done.length,
    undo: () => {
      for (const i of done) {
        const loc = map.get(rel[i]);
        if (loc !== null && loc.sco === rel[i + 3] && loc.slot === rel[i + 4]) map.set(rel[i], rel[i + 1], rel[i + 2], 0);
      }
    },
  };
}
