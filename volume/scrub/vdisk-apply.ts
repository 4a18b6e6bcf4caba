/**
 * The vDisk's part of applying a scrub (called by VDiskImpl.applyScrub, under the vDisk's lock): move the
 * live map, then persist the moved map pages, the slot counts of the new SCOs and the new doc in one
 * metadata commit (after an fdatasync of the write cache, as a cork does: the pages may also carry entries
 * of writes not yet corked). If the commit fails, the map is moved back and nothing changed.
 */
import type { MetadataOp } from '../../mds/types.js';
import { scoName, SLOT_SIZE } from '../sco-format.js';
import type { VDiskImpl } from '../vdisk.js';
import { commitCork, mapPrefix, pageBytes, scoCountPrefix, u32 } from '../vdisk-meta.js';
import type { ChainDoc } from './chain.js';
import { relocate } from './apply.js';

export async function applyScrubTo(v: VDiskImpl, next: ChainDoc, newScos: Array<[number, number]>, rel: Float64Array): Promise<number> {
  const { moved, undo } = relocate(v.map, rel);
  for (const [sco, count] of newScos) v.scoCounts.set(sco, count);
  const ops: MetadataOp[] = [];
  for (const [pageNo, page] of v.map.takeDirty()) ops.push({ key: mapPrefix(v.id) + pageNo.toString(16).padStart(8, '0'), value: page === null ? null : pageBytes(page) });
  for (const [sco, count] of newScos) ops.push({ key: scoCountPrefix(v.id) + scoName(sco), value: u32(count) });
  ops.push(...v.docs.ops(next));
  try {
    await commitCork(v.ctx.mds, v, ops, () => v.cache.syncLocal());
  } catch (err) {
    undo();
    for (const [sco] of newScos) v.scoCounts.delete(sco);
    throw err;
  }
  v.docs.doc = next; // shipped by the next DocStore.flush (the caller waits for it before sweeping)
  for (const [, count] of newScos) v.backendBytes += count * SLOT_SIZE;
  return moved;
}
