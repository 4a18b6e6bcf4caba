/**
 * Scrubbing in the vDisks' owner (the vPool's `scrub`): run the job on a vDisk and apply its result, apply
 * a result another host's scrubber produced, sweep, and say how it went (`user.vdisk.info`). One scrub of
 * a vDisk at a time in this process (BUSY otherwise). docs/scrubbing.md.
 */
import fs from 'node:fs';
import path from 'node:path';
import { VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import type { BlobStore } from '../backend/types.js';
import type { VDiskImpl } from '../vdisk/vdisk.js';
import { descendantPins, type ChainDoc } from '../lineage/chain.js';
import { pinCandidates } from './tree-vdisks.js';
import { appliedDoc, staleReason } from './apply.js';
import { resultKey, type ScrubResult } from '../lineage/scrub-state.js';
import { loadRelocations, loadResult, scrubVDisk, type ScrubProgress } from './scrub-job.js';
import { runSweep, stillRetired, sweepPlan } from './sweep.js';
import type { ScrubApi, ScrubReport, ScrubStatus, ScrubTotals, SweepItem } from '../types.js';

const log = logger('scrub');

/** What the scrubber needs of the vPool (volume/vpool.ts). Reads only. */
export interface ScrubHost {
  backend: BlobStore;
  /** `<state>/scrub`: the job's scratch directory in the owner. */
  scratchDir: string;
  vdiskAt(path: string): VDiskImpl;
  all(): Iterable<VDiskImpl>;
  /** Every vDisk id of the local tree (also those that could not open: their clone bases still pin). */
  allIds(): string[];
  /** True while a clone of one of `v`'s snapshots is being made. */
  cloning(v: VDiskImpl): boolean;
  scoClusters: number;
}

export class ScrubManager implements ScrubApi {
  fillRatio = 0.75;
  /** Objects of a scrub never applied are swept once this old. */
  staleScrubMs = 24 * 3600 * 1000;
  now: () => number = Date.now;
  private readonly running = new Set<string>();
  private readonly counts: ScrubTotals = { scrubs: 0, failures: 0, stale: 0, bytesRead: 0, bytesWritten: 0, bytesFreed: 0, seconds: 0 };
  private readonly reports = new Map<string, ScrubReport>();
  private readonly sweeps = new Map<string, { at: number; dryRun: boolean; items: SweepItem[] }>();

  constructor(private readonly host: ScrubHost) {}

  /** Scrubs the vDisk at `p` here: everything in the backend first, then the job, the apply and the sweep. */
  async scrub(p: string, opts: { onProgress?: (x: ScrubProgress) => void; checkpoint?: (what: string) => Promise<void> | void } = {}): Promise<ScrubReport> {
    const v = this.host.vdiskAt(p);
    return this.exclusive(v, async () => {
      await v.syncToBackend(); // the job reads the backend: what the write cache holds is scrubbed next time otherwise
      const result = await scrubVDisk(this.host.backend, v.id, {
        scratchDir: this.host.scratchDir, fillRatio: this.fillRatio, scoClusters: this.host.scoClusters, now: this.now,
        candidates: this.host.allIds(), onProgress: opts.onProgress, checkpoint: opts.checkpoint,
      });
      const rel = await loadRelocations(this.host.backend, result);
      return this.applyLocked(v, result, rel);
    });
  }

  /** Applies the newest result another scrubber left for the vDisk at `p`; null when there is none. */
  async applyPending(p: string): Promise<ScrubReport | null> {
    const v = this.host.vdiskAt(p);
    return this.exclusive(v, async () => {
      const doc = v.docs.doc as ChainDoc;
      const known = new Set([doc.scrub?.id, ...(doc.retiredScrubs ?? [])]);
      const results = (await this.host.backend.list(`vdisks/${v.id}/scrub/`)).filter((k) => k.endsWith('/result.json')).map((k) => k.split('/')[3]).filter((sid) => !known.has(sid)).sort();
      if (results.length === 0) return null;
      const sid = results[results.length - 1];
      const { result, relocations } = await loadResult(this.host.backend, v.id, sid);
      return this.applyLocked(v, result, relocations);
    });
  }

  /** What a sweep of the vDisk at `p` would delete (dry run), or deletes it. */
  async sweep(p: string, dryRun: boolean): Promise<SweepItem[]> {
    const v = this.host.vdiskAt(p);
    return this.exclusive(v, async () => {
      const plan = await this.plan(v);
      if (!dryRun) await this.runPlan(v, plan);
      this.sweeps.set(v.id, { at: this.now(), dryRun, items: plan });
      log.info(dryRun ? 'gc dry run: what a sweep would delete' : 'gc: swept', { vdisk: v.id, objects: plan.length, keys: plan.slice(0, 20).map((x) => x.key) });
      return plan;
    });
  }

  /** The status of the vDisk at `p` (user.vdisk.info, user.vdisk.scrubbing). */
  statusAt(p: string): ScrubStatus {
    const v = this.host.vdiskAt(p);
    return { ...this.status(v), lastSweep: this.sweeps.get(v.id) ?? null };
  }

  totals(): ScrubTotals {
    return { ...this.counts };
  }

  status(v: VDiskImpl): Omit<ScrubStatus, 'lastSweep'> {
    const doc = v.docs.doc as ChainDoc;
    const s = doc.scrub;
    return {
      running: this.running.has(v.id),
      last: s === undefined ? null : { id: s.id, ranAt: s.ranAt, appliedAt: s.appliedAt },
      lastReport: this.reports.get(v.id) ?? null,
      garbageBytes: s?.garbageBytes ?? 0,
      pendingGarbage: doc.garbage,
    };
  }

  // ---- internals -------------------------------------------------------------------------------------

  private async exclusive<T>(v: VDiskImpl, fn: () => Promise<T>): Promise<T> {
    if (this.running.has(v.id)) throw new VolumeError('BUSY', `a scrub of vDisk ${v.id} is running already`, { vdisk: v.id });
    this.running.add(v.id);
    const t0 = performance.now();
    try {
      return await fn();
    } catch (err) {
      this.counts.failures++;
      if ((err as { context?: { stale?: boolean } }).context?.stale === true) this.counts.stale++;
      throw err;
    } finally {
      this.counts.seconds += (performance.now() - t0) / 1000;
      this.running.delete(v.id);
    }
  }

  private async pins(v: VDiskImpl): Promise<Set<number>> {
    return descendantPins(this.host.backend, v.id, [...this.host.allIds(), ...(await pinCandidates(this.host.backend))]);
  }

  private async applyLocked(v: VDiskImpl, result: ScrubResult, rel: Float64Array): Promise<ScrubReport> {
    if (result.vdisk !== v.id) throw new VolumeError('INVALID', `scrub result ${result.scrubId} is for vDisk ${result.vdisk}, not ${v.id}`, { vdisk: v.id });
    // a clone being made reads the parent's chain as it is: it must see the old or the new one whole
    if (this.host.cloning(v)) throw new VolumeError('BUSY', `a clone of vDisk ${v.id} is being made: apply the scrub once it is done`, { vdisk: v.id });
    const t0 = Date.now();
    const pins = await this.pins(v);
    let relocated = 0;
    if (!result.nothingToDo) {
      let stale: string | null = null;
      relocated = await v.exclusive(async () => {
        const doc = v.docs.doc as ChainDoc;
        stale = staleReason(doc, v.corkedTlog, result, pins);
        if (stale !== null) {
          // it can never become valid again: retired, so that the sweep deletes its objects now
          await v.docs.commit({ ...(JSON.parse(JSON.stringify(doc)) as ChainDoc), retiredScrubs: [...(doc.retiredScrubs ?? []), result.scrubId] } as ChainDoc);
          return 0;
        }
        return v.applyScrub(appliedDoc(doc, result, v.corkedSco, this.now()), result.newScos, rel);
      });
      if (stale !== null) {
        log.warn('scrub result refused: stale', { vdisk: v.id, scrub: result.scrubId, reason: stale });
        await v.docs.flush();
        await this.runPlan(v, await this.plan(v));
        throw new VolumeError('BUSY', `scrub result ${result.scrubId} is stale: ${stale as string}`, { vdisk: v.id, scrub: result.scrubId, stale: true });
      }
      await v.docs.flush(); // the backend names the new chain before anything old goes
      await v.readGate.drain(); // reads planned on the old map are done
    }
    const plan = await this.plan(v);
    const swept = await this.runPlan(v, plan);
    const report: ScrubReport = { vdisk: v.id, scrub: result.scrubId, outcome: result.nothingToDo ? 'nothing to do' : 'applied', relocated, swept, stats: result.stats };
    this.reports.set(v.id, report);
    this.counts.scrubs++;
    this.counts.bytesRead += result.stats.bytesRead;
    this.counts.bytesWritten += result.stats.bytesWritten;
    log.info(result.nothingToDo ? 'scrub: nothing to rewrite; swept' : 'scrub applied', {
      vdisk: v.id, scrub: result.scrubId, relocated, sweptObjects: swept.objects, sweptBytes: swept.bytes, ms: Date.now() - t0,
      bytesRead: result.stats.bytesRead, bytesWritten: result.stats.bytesWritten,
    });
    if (result.nothingToDo) await this.host.backend.delete(resultKey(v.id, result.scrubId)).catch(() => undefined);
    return report;
  }

  private async plan(v: VDiskImpl): Promise<SweepItem[]> {
    if (this.host.cloning(v)) return []; // its base may name what looks unreferenced now: next time
    await v.docs.flush(); // nothing goes while the backend's doc may still name it (a restart after an apply's commit)
    return sweepPlan(this.host.backend, v.id, v.docs.doc as ChainDoc, { maxTlog: v.corkedTlog, maxSco: v.corkedSco, pins: await this.pins(v), now: this.now(), staleScrubMs: this.staleScrubMs });
  }

  private async runPlan(v: VDiskImpl, plan: SweepItem[]): Promise<{ objects: number; bytes: number }> {
    const done = await runSweep(this.host.backend, plan, log, { vdisk: v.id });
    this.counts.bytesFreed += done.bytes;
    const doc = v.docs.doc as ChainDoc;
    const left = stillRetired(doc, (await this.host.backend.list(`vdisks/${v.id}/scrub/`)));
    if ((doc.retiredScrubs ?? []).length !== left.length) await v.exclusive(() => v.docs.commit({ ...(JSON.parse(JSON.stringify(doc)) as ChainDoc), retiredScrubs: left } as ChainDoc));
    return done;
  }
}

/** The scratch directory of the owner's scrubs, emptied at start (a crash leaves a file there). */
export function scratchDirOf(stateDir: string): string {
  const dir = path.join(stateDir, 'scrub');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}
