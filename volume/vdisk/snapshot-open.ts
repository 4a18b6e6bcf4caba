/**
 * The snapshot side of opening a vDisk (vdisk-open.ts): restoring the snapshot list, template flag and
 * clone base on a rebuild from the backend, and finishing a rollback that a crash cut short.
 */
import { logger } from '../../util/log.js';
import { isDropped, maxTlogOf, parseDoc, rollbackKey } from '../lineage/snapshot-store.js';
import type { VDiskImpl } from './vdisk.js';

const log = logger('snapshots');

export interface Restored {
  /** False for a TLog a rollback dropped. */
  keep(tlog: number): boolean;
  /** Forgets the snapshots whose TLog never reached the backend (`present`: the TLogs that did). */
  pruneSnapshots(present: Set<number>): void;
}

/**
 * Rebuild from the backend, before the TLogs are replayed: the doc from the backend, the template flag,
 * and a clone's base (its parent's map as of the snapshot) under the map.
 */
export async function restoreOnRebuild(v: VDiskImpl): Promise<Restored> {
  await v.docs.loadBackend();
  const doc = v.docs.doc;
  await v.restoreLineage();
  return {
    keep: (tlog) => !isDropped(doc, tlog),
    pruneSnapshots(present) {
      // what the backend covers: its TLogs, and every range a rollback dropped (all was uploaded before it)
      let covered = 0;
      for (const t of present) covered = Math.max(covered, t);
      for (const [, end] of doc.dropped) covered = Math.max(covered, end);
      covered = Math.max(covered, doc.scrub?.upTo ?? 0); // the TLogs a scrub replaced were all in the backend
      const top = maxTlogOf(doc);
      const kept = doc.snapshots.filter((s) => s.tlog <= covered);
      if (kept.length === doc.snapshots.length && top <= covered) return;
      if (kept.length < doc.snapshots.length) {
        const lost = doc.snapshots.filter((s) => !kept.includes(s)).map((s) => s.name);
        log.warn('snapshots whose TLogs never reached the backend are gone after the rebuild', { vdisk: v.id, snapshots: lost });
      }
      // the TLogs those snapshots named never count, even where a later snapshot names their number
      if (top > covered) doc.dropped.push([covered + 1, top]);
      doc.snapshots = kept;
      doc.gen++;
      queueMicrotask(() => void v.docs.flush());
    },
  };
}

/** A rollback was interrupted by a crash: ship the doc it leads to (the caller then rebuilds from the backend). */
export async function finishRollback(v: VDiskImpl): Promise<void> {
  const doc = parseDoc(v.ctx.mds.get(rollbackKey(v.id))!, 'the rollback intent');
  log.warn('finishing a rollback interrupted by a restart', { vdisk: v.id, snapshots: doc.snapshots.map((s) => s.name) });
  await v.docs.shipNow(doc);
}
