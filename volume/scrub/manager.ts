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
import { lastRunKey, lastRunObjectKey, resultKey, type ScrubResult } from '../lineage/scrub-state.js';
import { loadRelocations, loadResult, scrubVDisk, type ScrubProgress } from './scrub-job.js';
import { runSweep, stillRetired, sweepPlan } from './sweep.js';
import { orphanPlan, removeOrphans } from './orphans.js';
import { DEFAULT_SCRUB_LEASE_MS, ScrubLock } from './scrub-lock.js';
import { DEFAULT_SCRUB_LIMITS, REAL_CLOCK, Throttle, throttledStore, type ScrubLimits, type ThrottleClock } from './throttle.js';
import type { ScrubApi, ScrubLastRun, ScrubReport, ScrubStatus, ScrubTotals, SweepItem } from '../types.js';

const log = logger('scrub');

/** Where a vDisk's last run is kept: the metadata store, and a copy in the backend a rebuild restores (../lineage/scrub-state.ts). */
export { lastRunKey };

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
  /** The vDisk ids whose namespaces are in use (tree, open vDisks and ancestors, pending creations): ../vpool-tree.ts. */
  referenced(): Promise<Set<string>>;
  scoClusters: number;
}

export class ScrubManager implements ScrubApi {
  fillRatio = 0.75;
  /** Objects of a scrub never applied are swept once this old. */
  staleScrubMs = 24 * 3600 * 1000;
  now: () => number = Date.now;
  /** The budget and the yielding of the owner's scrubs (config key `scrub`, live: setLimits). */
  limits: ScrubLimits = { ...DEFAULT_SCRUB_LIMITS };
  /** The longest a scrub waits for a busy vDisk's write cache to reach the backend before it scrubs what is there (ms). */
  syncWaitMs = 5000;
  /** The throttle's clock (tests inject one that moves only when the scrub sleeps). */
  clock: ThrottleClock = REAL_CLOCK;
  /** The lease of the per-vDisk scrub lock in the backend (scrub-lock.ts) this owner's scrubs take. */
  leaseMs = DEFAULT_SCRUB_LEASE_MS;
  private readonly running = new Set<string>();
  private orphanGc = false;
  /** Where each running scrub stands (the CLI's progress bar polls it through user.vdisk.scrubbing). */
  private readonly progress = new Map<string, ScrubProgress>();
  /** How the last scrub of each vDisk ended, failures included (user.vdisk.info); loaded from the metadata store once. */
  private readonly lastRuns = new Map<string, ScrubLastRun | null>();
  private readonly counts: ScrubTotals = { scrubs: 0, failures: 0, stale: 0, bytesRead: 0, bytesWritten: 0, bytesFreed: 0, seconds: 0 };
  private readonly reports = new Map<string, ScrubReport>();
  private readonly sweeps = new Map<string, { at: number; dryRun: boolean; items: SweepItem[] }>();

  constructor(private readonly host: ScrubHost) {}

  /** Scrubs the vDisk at `p` here: everything in the backend first, then the job, the apply and the sweep. */
  async scrub(p: string, opts: { onProgress?: (x: ScrubProgress) => void; checkpoint?: (what: string) => Promise<void> | void; onPass?: (what: string, bytes: number) => void } = {}): Promise<ScrubReport> {
    const v = this.host.vdiskAt(p);
    // one scrub of a vDisk at a time in this process (exclusive) and across hosts (the lock in the backend:
    // a `vpoolfs scrub --backend` elsewhere holding it makes this one BUSY, naming it)
    return this.exclusive(v, () => ScrubLock.with(this.host.backend, v.id, { holder: 'the owner (vpoolfs scrub on the mount)', leaseMs: this.leaseMs }, (lock) => this.scrubLocked(v, lock, opts)));
  }

  private async scrubLocked(v: VDiskImpl, lock: ScrubLock, opts: { onProgress?: (x: ScrubProgress) => void; checkpoint?: (what: string) => Promise<void> | void; onPass?: (what: string, bytes: number) => void }): Promise<ScrubReport> {
    {
      // the job reads the backend: what the write cache holds is scrubbed next time otherwise. Under a guest
      // load that never pauses the uploader may never be idle: after syncWaitMs the job scrubs what the
      // backend has (its horizon is the last TLog there) and the sync goes on by itself
      // (only then: a quiet vDisk is synced whole however long it takes, as before)
      const synced = v.syncToBackend();
      let waited = false;
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        waited = await Promise.race([synced.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.syncWaitMs)))]);
        clearTimeout(timer);
        if (waited || v.io.busy(Math.max(1, this.limits.yieldMs))) break;
      }
      if (!waited) {
        synced.catch((err: unknown) => log.warn('scrub: the sync before the scrub failed', { vdisk: v.id, error: String(err) }));
        log.info('scrub: the vDisk is busy, its uploads go on; scrubbing what the backend has', { vdisk: v.id, waitedMs: this.syncWaitMs });
      }
      // the budget and the yielding hold for the job's reads and writes and for the sweep's deletes
      const throttle = new Throttle({ ...this.limits }, v.io, this.clock, opts.onPass);
      const onProgress = (x: ScrubProgress): void => {
        this.progress.set(v.id, x);
        opts.onProgress?.(x);
      };
      try {
        const result = await scrubVDisk(this.host.backend, v.id, {
          scratchDir: this.host.scratchDir, fillRatio: this.fillRatio, scoClusters: this.host.scoClusters, now: this.now,
          candidates: this.host.allIds(), onProgress, throttle,
          checkpoint: async (what) => {
            lock.check();
            await opts.checkpoint?.(what);
          },
        });
        lock.check(); // another scrubber took the lock over: its result, not this one, is the one to apply
        const rel = await loadRelocations(this.host.backend, result);
        const report = await this.applyLocked(v, result, rel, throttledStore(this.host.backend, throttle));
        report.throttle = { ...throttle.stats };
        return report;
      } finally {
        this.progress.delete(v.id);
      }
    }
  }

  /**
   * `scrub` in the background (`user.vdisk.scrub start`, what `vpoolfs scrub` uses: a setxattr that lasted the
   * whole scrub would hold the file's inode lock, and the guest's writes with it). BUSY at once if one runs;
   * the outcome, failures included, is in statusAt (lastRun, lastReport) and in the log.
   */
  start(p: string): void {
    const v = this.host.vdiskAt(p);
    if (this.running.has(v.id)) throw new VolumeError('BUSY', `a scrub of vDisk ${v.id} is running already`, { vdisk: v.id });
    this.scrub(p).catch((err: unknown) => log.warn('scrub failed', { vdisk: v.id, path: p, error: (err as Error).message }));
  }

  /** New limits for the scrubs that start from now on (the config file's `scrub` key, applied live). */
  setLimits(l: Partial<ScrubLimits>): void {
    this.limits = { ...DEFAULT_SCRUB_LIMITS, ...l };
    log.info('scrub: limits set', { ...this.limits });
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

  /**
   * The orphan gc (orphans.ts): whole vDisk namespaces nothing references, listed (dry run) or deleted.
   * One at a time (BUSY otherwise): two would only do the same work.
   */
  async orphans(dryRun: boolean): Promise<SweepItem[]> {
    if (this.orphanGc) throw new VolumeError('BUSY', 'an orphan gc of this vPool is running already', {});
    this.orphanGc = true;
    try {
      const plan = await orphanPlan(this.host.backend, () => this.host.referenced());
      if (!dryRun && plan.items.length > 0) {
        const done = await removeOrphans(this.host.backend, plan, log);
        this.counts.bytesFreed += done.bytes;
      }
      log.info(dryRun ? 'gc dry run: orphan vDisk namespaces' : 'gc: orphan vDisk namespaces deleted', { namespaces: plan.items.length, keys: plan.items.slice(0, 20).map((x) => x.key) });
      return plan.items;
    } finally {
      this.orphanGc = false;
    }
  }

  /** The status of the vDisk at `p` (user.vdisk.info, user.vdisk.scrubbing). */
  statusAt(p: string): ScrubStatus {
    const v = this.host.vdiskAt(p);
    return { ...this.status(v), progress: this.progress.get(v.id) ?? null, lastSweep: this.sweeps.get(v.id) ?? null };
  }

  totals(): ScrubTotals {
    return { ...this.counts };
  }

  status(v: VDiskImpl): Omit<ScrubStatus, 'lastSweep' | 'progress'> {
    const doc = v.docs.doc as ChainDoc;
    const s = doc.scrub;
    return {
      running: this.running.has(v.id),
      last: s === undefined ? null : { id: s.id, ranAt: s.ranAt, appliedAt: s.appliedAt },
      lastReport: this.reports.get(v.id) ?? null,
      lastRun: this.lastRunOf(v),
      garbageBytes: s?.garbageBytes ?? 0,
      pendingGarbage: doc.garbage,
    };
  }

  // ---- internals -------------------------------------------------------------------------------------

  private async exclusive<T>(v: VDiskImpl, fn: () => Promise<T>): Promise<T> {
    if (this.running.has(v.id)) throw new VolumeError('BUSY', `a scrub of vDisk ${v.id} is running already`, { vdisk: v.id });
    this.running.add(v.id);
    const t0 = performance.now();
    const at = this.now();
    try {
      const out = await fn();
      const r = out as Partial<ScrubReport> | null;
      if (r !== null && typeof r === 'object' && typeof r.outcome === 'string') {
        await this.recordRun(v, { at, ms: Math.round(performance.now() - t0), outcome: r.outcome, freedBytes: r.swept?.bytes ?? 0 });
      }
      return out;
    } catch (err) {
      this.counts.failures++;
      const stale = (err as { context?: { stale?: boolean } }).context?.stale === true;
      if (stale) this.counts.stale++;
      await this.recordRun(v, { at, ms: Math.round(performance.now() - t0), outcome: stale ? 'stale' : 'failed', freedBytes: 0, error: (err as Error).message });
      throw err;
    } finally {
      this.counts.seconds += (performance.now() - t0) / 1000;
      this.running.delete(v.id);
    }
  }

  /** The last run of `v`: this process's, else the one the metadata store kept from before a restart. */
  private lastRunOf(v: VDiskImpl): ScrubLastRun | null {
    if (!this.lastRuns.has(v.id)) {
      const raw = v.ctx.mds.get(lastRunKey(v.id));
      let run: ScrubLastRun | null = null;
      try {
        run = raw === undefined ? null : (JSON.parse(raw.toString('utf8')) as ScrubLastRun);
      } catch (err) {
        log.warn('scrub: the recorded last run is not valid JSON; shown as none', { vdisk: v.id, error: String(err) });
      }
      this.lastRuns.set(v.id, run);
    }
    return this.lastRuns.get(v.id) ?? null;
  }

  /**
   * Keeps `run` as the vDisk's last run, in memory, in the metadata store and in the backend (where a rebuild
   * finds it). A failure to store it is logged, never the scrub's outcome.
   */
  private async recordRun(v: VDiskImpl, run: ScrubLastRun): Promise<void> {
    this.lastRuns.set(v.id, run);
    const body = Buffer.from(JSON.stringify(run));
    try {
      await v.ctx.mds.commit([{ key: lastRunKey(v.id), value: body }]);
    } catch (err) {
      log.warn('scrub: could not record the last run in the metadata store (shown until the daemon restarts)', { vdisk: v.id, error: String(err) });
    }
    try {
      await this.host.backend.put(lastRunObjectKey(v.id), body);
    } catch (err) {
      log.warn('scrub: could not copy the last run to the backend (a rebuild on another state directory will not show it)', { vdisk: v.id, error: String(err) });
    }
  }

  private async pins(v: VDiskImpl): Promise<Set<number>> {
    return descendantPins(this.host.backend, v.id, [...this.host.allIds(), ...(await pinCandidates(this.host.backend))]);
  }

  private async applyLocked(v: VDiskImpl, result: ScrubResult, rel: Float64Array, store: BlobStore = this.host.backend): Promise<ScrubReport> {
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
    const swept = await this.runPlan(v, plan, store);
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

  private async runPlan(v: VDiskImpl, plan: SweepItem[], store: BlobStore = this.host.backend): Promise<{ objects: number; bytes: number }> {
    const done = await runSweep(store, plan, log, { vdisk: v.id });
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
