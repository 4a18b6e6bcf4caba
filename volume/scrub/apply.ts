/**
 * The owner's side of a scrub (docs/scrubbing.md, "Applying"): is a result still valid for the vDisk as
 * it is now (`staleReason`), the doc it leads to (`appliedDoc`), and the move of the live cluster map
 * The vDisk moves its map and commits under its lock (VDiskImpl.applyScrub, ../vdisk/scrub-apply.ts); the
 * ScrubManager orchestrates.
 */
import { addGarbage } from '../lineage/snapshot-store.js';
import type { ChainDoc } from '../lineage/chain.js';
import { SCRUB_SCO_BASE, type ScrubResult } from '../lineage/scrub-state.js';

/** Why `result` may not be applied to a vDisk whose doc is `doc` and cork point `corkedTlog`, or null. */
export function staleReason(doc: ChainDoc, corkedTlog: number, result: ScrubResult, pins: Set<number>): string | null {
  const cur = doc.scrub?.id ?? null;
  if (cur !== result.basis.prevScrub) return `the vDisk's chain changed since the scrub ran (scrub ${cur ?? 'none'} is applied now, the result was made over ${result.basis.prevScrub ?? 'none'})`;
  const upTo = result.state.upTo;
  const dropped = JSON.stringify(doc.dropped.filter(([a]) => a <= upTo));
  if (dropped !== JSON.stringify(result.basis.dropped)) return `a rollback since the scrub ran dropped TLogs it covered (dropped ranges now ${dropped})`;
  if (upTo > corkedTlog) return `the result covers TLog ${upTo}, past this vDisk's cork point ${corkedTlog} (it comes from another history)`;
  for (const s of doc.snapshots) {
    if (s.tlog <= upTo && !result.basis.points.includes(s.tlog)) return `snapshot ${s.name} (TLog ${s.tlog}) was not a point when the scrub ran`;
  }
  const unnamed = new Set(result.unnamed ?? []);
  for (const p of pins) {
    if (unnamed.has(p)) return `a clone the scrub did not see (made since, or not yet in the backend's tree) names SCO ${p}, which the result rewrote or dropped`;
    if (p >= SCRUB_SCO_BASE && !result.state.scoRanges.some((r) => p >= r.from && p <= r.to)) {
      return `a clone made since the scrub ran names scrub SCO ${p}, which the result no longer lists`;
    }
  }
  return null;
}

/** The doc after applying `result` (a new generation; the caller commits it). */
export function appliedDoc(doc: ChainDoc, result: ScrubResult, corkedSco: number, now: number): ChainDoc {
  const next = JSON.parse(JSON.stringify(doc)) as ChainDoc;
  next.gen = doc.gen + 1;
  const prev = doc.scrub;
  next.scrub = {
    ...result.state, appliedAt: now,
    // after a rebuild, new SCOs and TLogs are numbered past these even when the sweep deleted the top ones
    ownScoHigh: Math.max(prev?.ownScoHigh ?? 0, corkedSco),
  };
  next.retiredScrubs = [...new Set([...(doc.retiredScrubs ?? []), ...(prev !== undefined ? [prev.id] : [])])];
  // the garbage ranges up to the horizon are taken care of; later ones stay for the next scrub
  const left = next.garbage.filter((g) => g.toTlog > result.state.upTo);
  next.garbage = [];
  for (const g of left) addGarbage(next, { ...g, fromTlog: Math.max(g.fromTlog, result.state.upTo + 1) });
  return next;
}
