/**
 * A vDisk's snapshot list and configuration (the "vDisk document"), persisted in two places:
 *
 *   metadata store   vd/<id>/doc          JSON VDiskDoc, committed before a snapshot call returns
 *                    vd/<id>/doc-shipped  the generation of the doc the backend has
 *                    vd/<id>/rollback     a rollback in progress (the doc it leads to), see ../snapshots/snapshots.ts
 *   backend          vdisks/<id>/vdisk.json   the same JSON, shipped after each change (retried)
 *
 * A snapshot is a point in the TLog sequence: it covers every TLog up to and including `tlog`. Ranges of
 * TLogs dropped by a rollback are listed in `dropped` so that a rebuild from the backend skips them even if
 * their objects are still there (they are garbage for the scrubber, listed in `garbage`).
 */
import { VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import type { MetadataOp, MetadataStore } from '../../mds/types.js';
import type { BlobStore } from '../backend/types.js';
import { withRetry } from '../backend/retry.js';
import type { DtlMode } from '../types.js';
import type { ScrubState } from './scrub-state.js';

const log = logger('snapshots');

export interface SnapshotMeta {
  name: string;
  uuid: string;
  /** Milliseconds since the epoch. */
  timestamp: number;
  /** The last TLog this snapshot covers (0: nothing was ever written). */
  tlog: number;
  sticky: boolean;
  automatic: boolean;
  /** Taken with every acknowledged write in (the vDisk's writes were held while the TLog closed). */
  consistent: boolean;
  /** The doc generation that first named this snapshot (it is in the backend once that generation is). */
  gen: number;
}

export interface ParentRef {
  vdiskId: string;
  snapshot: string;
  uuid: string;
  tlog: number;
}

/** Work left for the scrubber: entries of TLogs `fromTlog..toTlog` may no longer be referenced. */
export interface Garbage {
  fromTlog: number;
  toTlog: number;
  reason: string;
}

export interface VDiskDoc {
  version: 1;
  gen: number;
  snapshots: SnapshotMeta[];
  /** Inclusive TLog ranges that no longer count (a rollback dropped them). */
  dropped: Array<[number, number]>;
  template: boolean;
  /** For a clone: the parent vDisk and the snapshot it was cloned from. */
  parent: ParentRef | null;
  /** Namespaces of the ancestors, nearest first: a cluster-map entry of clone depth k reads ancestors[k-1]. */
  ancestors: string[];
  garbage: Garbage[];
  /** The vDisk's DTL mode (`user.vdisk.dtl`), so a rebuild on another router keeps it; absent: the mount's --dtl. */
  dtlMode?: DtlMode;
  /** The applied scrub: TLogs up to `scrub.upTo` are replaced by its segments (docs/scrubbing.md). */
  scrub?: ScrubState;
  /** Scrubs replaced by a later one (or refused as stale) whose objects the sweep still has to delete. */
  retiredScrubs?: string[];
}

export const docKey = (id: string): string => `vd/${id}/doc`;
export const docShippedKey = (id: string): string => `vd/${id}/doc-shipped`;
export const rollbackKey = (id: string): string => `vd/${id}/rollback`;
export const backendDocKey = (id: string): string => `vdisks/${id}/vdisk.json`;

export function emptyDoc(): VDiskDoc {
  return { version: 1, gen: 0, snapshots: [], dropped: [], template: false, parent: null, ancestors: [], garbage: [] };
}

export function parseDoc(raw: Buffer, where: string): VDiskDoc {
  let d: VDiskDoc;
  try {
    d = JSON.parse(raw.toString('utf8')) as VDiskDoc;
  } catch (err) {
    throw new VolumeError('CHECKSUM', `the vDisk document in ${where} is not valid JSON`, { where }, { cause: err });
  }
  if (d.version !== 1 || !Array.isArray(d.snapshots)) throw new VolumeError('CHECKSUM', `the vDisk document in ${where} has an unknown format`, { where });
  return { ...emptyDoc(), ...d };
}

/** Records garbage, merged with the ranges it overlaps or touches (the list stays short for the scrubber). */
export function addGarbage(doc: VDiskDoc, g: Garbage): void {
  if (g.toTlog < g.fromTlog) return;
  let merged = { ...g };
  const rest: Garbage[] = [];
  for (const x of doc.garbage) {
    if (x.fromTlog <= merged.toTlog + 1 && merged.fromTlog <= x.toTlog + 1) {
      merged = { fromTlog: Math.min(x.fromTlog, merged.fromTlog), toTlog: Math.max(x.toTlog, merged.toTlog), reason: [...new Set([...x.reason.split('; '), ...merged.reason.split('; ')])].join('; ') };
    } else rest.push(x);
  }
  doc.garbage = [...rest, merged].sort((a, b) => a.fromTlog - b.fromTlog);
}

export function isDropped(doc: VDiskDoc, tlog: number): boolean {
  return doc.dropped.some(([a, b]) => tlog >= a && tlog <= b);
}

/** The highest TLog number the doc mentions (new TLogs are numbered past it after a rebuild). */
export function maxTlogOf(doc: VDiskDoc): number {
  let m = 0;
  for (const s of doc.snapshots) m = Math.max(m, s.tlog);
  for (const [, b] of doc.dropped) m = Math.max(m, b);
  return Math.max(m, doc.scrub?.upTo ?? 0); // the sweep deletes the TLogs a scrub replaced: never number past them again
}

/** A snapshot name: 1–255 bytes of UTF-8 without `/`, `:` or NUL (INVALID otherwise). */
export function checkSnapshotName(name: string): void {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes < 1 || bytes > 255 || /[/:\0]/.test(name)) {
    throw new VolumeError('INVALID', `bad snapshot name ${JSON.stringify(name.slice(0, 80))}: 1–255 bytes of UTF-8 without '/', ':' or NUL`, { name: name.slice(0, 80), bytes });
  }
}

/**
 * The doc of one vDisk and its shipping to the backend. Every change goes through `commit`: the metadata
 * store has it (durable against a crash) when it resolves; the backend copy follows in the background.
 */
export class DocStore {
  doc: VDiskDoc = emptyDoc();
  shippedGen = 0;
  private shipping: Promise<void> | null = null;
  private stopped = false;

  constructor(private readonly id: string, private readonly mds: MetadataStore, private readonly backend: BlobStore) {}

  /** Loads the local copy (local restart); false if there is none. */
  loadLocal(): boolean {
    const raw = this.mds.get(docKey(this.id));
    if (raw === undefined) return false;
    this.doc = parseDoc(raw, 'the metadata store');
    const shipped = this.mds.get(docShippedKey(this.id));
    this.shippedGen = shipped === undefined ? 0 : Number(shipped.toString());
    if (this.shippedGen < this.doc.gen) this.kick();
    return true;
  }

  /** Loads the backend copy (rebuild); an empty doc if there is none. */
  async loadBackend(): Promise<void> {
    const key = backendDocKey(this.id);
    if ((await this.backend.head(key)) === null) {
      this.doc = emptyDoc();
      return;
    }
    this.doc = parseDoc(await this.backend.get(key), key);
    this.shippedGen = this.doc.gen;
  }

  /** The metadata operations that persist `doc` as the new local doc (a new generation). */
  ops(doc: VDiskDoc): MetadataOp[] {
    return [{ key: docKey(this.id), value: Buffer.from(JSON.stringify(doc)) }];
  }

  /**
   * Persists `doc` (with `extra` operations, atomically) and starts shipping it. Crash: once resolved the
   * local copy survives; the backend copy is shipped again at the next start if it had not arrived.
   */
  async commit(doc: VDiskDoc, extra: MetadataOp[] = []): Promise<void> {
    doc.gen = this.doc.gen + 1;
    await this.mds.commit([...this.ops(doc), ...extra]);
    this.doc = doc;
    this.kick();
  }

  /** Ships `doc` to the backend now and waits (retrying while the backend is away). */
  async shipNow(doc: VDiskDoc): Promise<void> {
    const body = Buffer.from(JSON.stringify(doc));
    await withRetry(() => this.backend.put(backendDocKey(this.id), body), { what: `ship the snapshot list of vDisk ${this.id}`, log, cancelled: () => this.stopped });
  }

  /** Resolves once the backend has the current doc. Crash: nothing; the next start ships it again. */
  async flush(): Promise<void> {
    while (this.shippedGen < this.doc.gen && !this.stopped) {
      this.kick();
      await this.shipping;
    }
  }

  stop(): void {
    this.stopped = true;
  }

  private kick(): void {
    if (this.shipping !== null || this.stopped) return;
    this.shipping = (async () => {
      while (this.shippedGen < this.doc.gen && !this.stopped) {
        const doc = this.doc;
        await this.shipNow(doc);
        if (this.stopped) return;
        await this.mds.commit([{ key: docShippedKey(this.id), value: Buffer.from(String(doc.gen)) }]);
        this.shippedGen = Math.max(this.shippedGen, doc.gen);
      }
    })()
      .catch((err) => {
        if (!this.stopped) log.error('the snapshot list could not be shipped; retried at the next change or start', { vdisk: this.id, error: String(err) });
      })
      .finally(() => {
        this.shipping = null;
      });
  }
}
