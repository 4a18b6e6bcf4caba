/**
 * Where a scrub puts things in the backend, the SCO numbers it uses, the vDisk doc's `scrub` state and the
 * result object (docs/scrubbing.md):
 *
 *   vdisks/<id>/scrub/<scrubId>/sco/<n>      new SCOs (n ≥ SCRUB_SCO_BASE)
 *   vdisks/<id>/scrub/<scrubId>/tlog/<end>   one compact TLog per segment, named by its last TLog
 *   vdisks/<id>/scrub/<scrubId>/result.json  what the owner applies (ScrubResult)
 *   vdisks/<id>/scrub/<scrubId>/relocations  the live map's moves: 5 × f64 each (address, old sco, slot, new sco, slot)
 *
 * Every key carries the scrub id, so a scrub writes nothing another scrub or the owner writes or reads
 * before the result is applied.
 */
import { scoName } from '../datapath/formats/sco-format.js';
import { tlogName } from '../datapath/formats/tlog-format.js';
import { scoKey } from '../datapath/formats/backend-layout.js';

/** Scrub SCOs are numbered from here; the owner counts its own up from 1 and never gets near. */
export const SCRUB_SCO_BASE = 0x80000000;
/** The highest SCO number (u32 in the map, the slot header and the TLog record). */
export const MAX_SCO = 0xffffffff;

export const scrubPrefix = (id: string, scrubId: string): string => `vdisks/${id}/scrub/${scrubId}/`;
export const scrubScoKey = (id: string, scrubId: string, sco: number): string => `vdisks/${id}/scrub/${scrubId}/sco/${scoName(sco)}`;
export const segmentKey = (id: string, scrubId: string, end: number): string => `vdisks/${id}/scrub/${scrubId}/tlog/${tlogName(end)}`;
export const resultKey = (id: string, scrubId: string): string => `vdisks/${id}/scrub/${scrubId}/result.json`;
export const relocationsKey = (id: string, scrubId: string): string => `vdisks/${id}/scrub/${scrubId}/relocations`;

/**
 * How the last scrub of a vDisk ended (`user.vdisk.info`'s `scrub.lastRun`): in the metadata store under
 * `lastRunKey`, and a copy in the backend under `lastRunObjectKey`, from which a rebuild on a fresh state
 * directory restores it (../vdisk/vdisk-open.ts). Not in the doc: a doc commit per run (failures too) would
 * ship a doc generation for bookkeeping. Deleting the vDisk drops both with the rest of its prefixes.
 */
export const lastRunKey = (id: string): string => `vd/${id}/scrub-last-run`;
export const lastRunObjectKey = (id: string): string => `vdisks/${id}/scrub-last-run.json`;

/** SCO numbers [from, to] of scrub `scrub` (its SCOs' keys carry that id). */
export interface ScoRange {
  from: number;
  to: number;
  scrub: string;
}

/** The doc's `scrub` field: TLogs up to `upTo` are replaced by the segments of scrub `id`. */
export interface ScrubState {
  id: string;
  upTo: number;
  /**
   * The segment ends, ascending: the last TLog each replaces (never a dropped number, see scrub-job.ts), so
   * ≤ the snapshot point that closed it and > the one before; the last is `upTo`.
   */
  segments: number[];
  /** Where each scrub SCO number the chain may name lives (earlier scrubs' SCOs kept whole stay listed). */
  scoRanges: ScoRange[];
  /** When the job ran (ms since the epoch) and when it was applied. */
  ranAt: number;
  appliedAt?: number;
  /** Bytes of garbage the job left in the backend (pinned by clones or in SCOs above the fill ratio). */
  garbageBytes: number;
  /** The owner's highest own SCO number when applied: a rebuild numbers new SCOs past it (the sweep may delete the top ones). */
  ownScoHigh?: number;
}

/** Scrub ids whose objects may be deleted (a later scrub replaced them); kept in the doc until swept. */
export interface ScrubDocFields {
  scrub?: ScrubState;
  retiredScrubs?: string[];
}

export interface ScrubStats {
  tlogsRead: number;
  scosRead: number;
  bytesRead: number;
  bytesWritten: number;
  /** Slots of the chain that no point shows and no clone pins, before this scrub. */
  garbageBytesBefore: number;
  /** Bytes of backend objects the apply makes unreferenced (freed by the sweep). */
  bytesFreed: number;
  scosRewritten: number;
  scosDropped: number;
  scosPinned: number;
  newScos: number;
  ms: number;
}

/** What a scrub produced: applied by the vDisk's owner (apply.ts), or refused as stale. */
export interface ScrubResult {
  version: 1;
  vdisk: string;
  scrubId: string;
  /** What the job read: a result applies only while these still hold. */
  basis: {
    docGen: number;
    /** The scrub id of the chain it read (null: never scrubbed). */
    prevScrub: string | null;
    /** The dropped ranges that touch TLogs ≤ upTo, as the job saw them. */
    dropped: Array<[number, number]>;
    /** The snapshot TLogs up to the horizon it made segment boundaries of. */
    points: number[];
  };
  /** The doc's new `scrub` state. */
  state: ScrubState;
  /** Scrub SCOs the new chain names (number → slot count). */
  newScos: Array<[number, number]>;
  /**
   * SCOs the old chain named and the new one does not (rewritten, or without a live slot). The owner refuses
   * the result if a clone it knows of names one of them (a clone the job did not see: made since, or not yet
   * in the backend's tree): the chain would stop naming a SCO the clone reads, and a rebuild would not know it.
   * Absent in results of older builds.
   */
  unnamed?: number[];
  /** Number of relocations in the `relocations` object. */
  relocations: number;
  /** True when nothing was rewritten and the chain was already compact: applying changes nothing. */
  nothingToDo: boolean;
  stats: ScrubStats;
}

/** The backend key of SCO `sco` of vDisk `id`: its own, or a scrub's (the doc's ranges say which). */
export function scoKeyIn(id: string, ranges: readonly ScoRange[] | undefined, sco: number): string {
  if (sco < SCRUB_SCO_BASE) return scoKey(id, sco);
  for (const r of ranges ?? []) if (sco >= r.from && sco <= r.to) return scrubScoKey(id, r.scrub, sco);
  return scoKey(id, sco); // unknown: the read fails NOT_FOUND / CHECKSUM, never reads another SCO's bytes
}

/** A short, sortable, unique scrub id: UTC stamp and 8 random hex digits. */
export function newScrubId(now: number, rand: string): string {
  return `${new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${rand.slice(0, 8)}`;
}
