/**
 * Mark and sweep of one vDisk's namespace in the backend (docs/scrubbing.md, "The sweep"): what its
 * chain, its clones' bases and the uploads in flight do not reference. Run by the owner after an apply
 * (once the backend has the new doc), and by `vpoolfs gc [--dry-run]`, which lists each object with the
 * reason it goes. Deleting is idempotent: a sweep cut short is simply found again by the next one.
 */
import type { Logger } from '../../util/log.js';
import type { SweepItem } from '../types.js';
import type { BlobStore } from '../backend/types.js';
import { keyNumber, vdiskPrefix } from '../datapath/formats/backend-layout.js';
import { baseKey } from '../lineage/clone-base.js';
import { backendDocKey, isDropped } from '../lineage/snapshot-store.js';
import { RecordType } from '../datapath/formats/tlog-format.js';
import { chainItems, readItem, type ChainDoc } from '../lineage/chain.js';
import { relocationsKey, resultKey, scoKeyIn, SCRUB_SCO_BASE } from '../lineage/scrub-state.js';

export type { SweepItem };

export interface SweepOptions {
  /** Nothing past these is touched (uploads may be in flight): the owner's cork point, or the chain's end. */
  maxTlog: number;
  maxSco: number;
  /** This vDisk's SCOs that clone bases name. */
  pins: Set<number>;
  now: number;
  /** Objects of a scrub never applied go once it is this old (by its id's stamp); default one day. */
  staleScrubMs?: number;
}

export const DEFAULT_STALE_SCRUB_MS = 24 * 3600 * 1000;

/** The time in a scrub id (`20261205T021000Z-…`), or NaN. */
export function scrubIdTime(sid: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-/.exec(sid);
  return m === null ? NaN : Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
}

/** What may go, and why. Reads the chain's TLogs and segments (to know which SCOs they name). */
export async function sweepPlan(backend: BlobStore, id: string, doc: ChainDoc, opts: SweepOptions): Promise<SweepItem[]> {
  const ranges = doc.scrub?.scoRanges;
  const marked = new Set<string>([backendDocKey(id), baseKey(id)]);
  for (const item of await chainItems(backend, id, doc)) {
    marked.add(item.key);
    for (const r of await readItem(backend, id, item)) if (r.type === RecordType.Sco) marked.add(scoKeyIn(id, ranges, r.sco));
  }
  for (const sco of opts.pins) marked.add(scoKeyIn(id, ranges, sco));
  const current = doc.scrub?.id;
  if (current !== undefined) marked.add(resultKey(id, current));
  const retired = new Set(doc.retiredScrubs ?? []);
  const staleMs = opts.staleScrubMs ?? DEFAULT_STALE_SCRUB_MS;
  const out: SweepItem[] = [];
  const prefix = vdiskPrefix(id);
  for (const key of await backend.list(prefix)) {
    if (marked.has(key)) continue;
    const rest = key.slice(prefix.length).split('/');
    if (rest[0] === 'tlog' && rest.length === 2) {
      const n = keyNumber(key);
      if (n > opts.maxTlog) continue;
      const why = doc.scrub !== undefined && n <= doc.scrub.upTo ? 'TLog replaced by the segments of the applied scrub' : isDropped(doc, n) ? 'TLog dropped by a rollback' : 'TLog not in the chain';
      out.push({ key, reason: why });
    } else if (rest[0] === 'sco' && rest.length === 2) {
      const n = keyNumber(key);
      if (n > opts.maxSco || n >= SCRUB_SCO_BASE) continue;
      out.push({ key, reason: 'SCO no chain record and no clone base names' });
    } else if (rest[0] === 'scrub' && rest.length >= 3) {
      const sid = rest[1];
      if (sid === current) {
        if (key === relocationsKey(id, sid)) out.push({ key, reason: 'relocations of the applied scrub' });
        else if (rest[2] === 'sco' || rest[2] === 'tlog') out.push({ key, reason: `${rest[2] === 'sco' ? 'scrub SCO' : 'segment'} of the applied scrub that nothing names any more` });
      } else if (retired.has(sid)) {
        out.push({ key, reason: `object of scrub ${sid}, replaced by a later scrub` });
      } else if (opts.now - scrubIdTime(sid) > staleMs) {
        out.push({ key, reason: `object of scrub ${sid}, never applied and older than ${Math.round(staleMs / 3600_000)} h` });
      }
    }
  }
  return out;
}

/** Deletes what `plan` lists; returns the objects and bytes removed. */
export async function runSweep(backend: BlobStore, plan: SweepItem[], log: Logger, ctx: Record<string, unknown>): Promise<{ objects: number; bytes: number }> {
  let bytes = 0;
  for (const { key } of plan) {
    bytes += (await backend.head(key))?.size ?? 0;
    await backend.delete(key);
  }
  if (plan.length > 0) log.info('sweep: unreferenced backend objects deleted', { ...ctx, objects: plan.length, bytes });
  return { objects: plan.length, bytes };
}

/** The scrub ids a sweep may forget from `retiredScrubs` (none of their objects is left in `plan`'s wake). */
export function stillRetired(doc: ChainDoc, keysLeft: string[]): string[] {
  const left = new Set(keysLeft.map((k) => k.split('/')[3]));
  return (doc.retiredScrubs ?? []).filter((sid) => left.has(sid));
}
