/**
 * Automatic snapshots and retention (DESIGN §3), on node-schedule cron specs from the vPool config:
 *
 *   schedule.snapshot    default "0 * * * *" (hourly): every vDisk but templates gets an automatic snapshot
 *   schedule.retention   default "30 0 * * *" (daily): retentionPlan() decides what goes
 *   schedule.scrub       default "0 2 * * *" (nightly): every vDisk is scrubbed (docs/scrubbing.md), after
 *                        the night's retention freed its snapshots
 *
 * `null` (or "off") disables one. A vDisk delegated to another router (ownership per vDisk, docs/cluster.md) gets
 * its automatic snapshots and retention through that router (DelegatedSnapshots: the vPool's schedule is its
 * owner's); its scrub waits until it is back (skipped, said once per vDisk). The clock is injectable so that tests can run years in a second; the jobs
 * only decide *when* to run, every decision is made from `clock()`.
 */
import schedule from 'node-schedule';
import { Serial } from '../../util/serial.js';
import { VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { stamp } from './snapshot-host.js';
import type { SnapshotInfo, VPool } from '../types.js';

const log = logger('snapshot-schedule');

export const DAY_MS = 86_400_000;
export const DEFAULT_SCHEDULE = { snapshot: '0 * * * *', retention: '30 0 * * *', scrub: '0 2 * * *' } as const;

export interface ScheduleConfig {
  /** Cron spec for automatic snapshots; null or "off" disables them. */
  snapshot?: string | null;
  /** Cron spec for retention; null or "off" disables it. */
  retention?: string | null;
  /** Cron spec for the nightly scrub of every vDisk; null or "off" disables it. */
  scrub?: string | null;
}

/** INVALID unless `spec` is a cron spec node-schedule accepts (or null/"off"). */
export function checkCron(spec: unknown, key: string): string | null {
  if (spec === null || spec === 'off') return null;
  if (typeof spec !== 'string' || spec.trim() === '') throw new VolumeError('INVALID', `${key}: expected a cron spec like "0 * * * *", or null`, { key });
  const probe = schedule.scheduleJob(spec, () => undefined);
  if (probe === null) throw new VolumeError('INVALID', `${key}: not a cron spec node-schedule understands: ${JSON.stringify(spec)}`, { key, spec });
  probe.cancel();
  return spec;
}

/**
 * The snapshots retention removes at `now`: every snapshot younger than a day stays; from a day to a week
 * old, the newest of each UTC day stays; from a week to 30 days, the newest of each week (Monday-based)
 * stays; older ones go. Sticky snapshots and snapshots with clones always stay and are not counted.
 */
export function retentionPlan(snaps: readonly SnapshotInfo[], now: number): string[] {
  const keepOf = new Map<string, SnapshotInfo>();
  const out: string[] = [];
  for (const s of snaps) {
    if (s.sticky || s.clones.length > 0) continue;
    const age = now - s.timestamp;
    if (age < DAY_MS) continue;
    if (age >= 30 * DAY_MS) {
      out.push(s.name);
      continue;
    }
    const day = Math.floor(s.timestamp / DAY_MS);
    // 1970-01-01 was a Thursday: +3 makes weeks start on Monday
    const bucket = age < 7 * DAY_MS ? `d${day}` : `w${Math.floor((day + 3) / 7)}`;
    const kept = keepOf.get(bucket);
    if (kept === undefined) keepOf.set(bucket, s);
    else if (s.timestamp >= kept.timestamp) {
      out.push(kept.name);
      keepOf.set(bucket, s);
    } else out.push(s.name);
  }
  return out;
}

/** Every vDisk path of the vPool, depth first. */
function vdiskPaths(pool: VPool, dir = '/'): string[] {
  const out: string[] = [];
  for (const name of pool.readdir(dir)) {
    const p = dir === '/' ? `/${name}` : `${dir}/${name}`;
    try {
      if (pool.stat(p).kind === 'dir') out.push(...vdiskPaths(pool, p));
      else out.push(p);
    } catch {
      // removed meanwhile
    }
  }
  return out;
}

/** The snapshots of the vDisks another router serves, through it (tools/daemon/delegate-calls.ts). */
export interface DelegatedSnapshots {
  /** The router the vDisk at `p` is delegated to; undefined when it is served here. */
  routerOf(p: string): string | undefined;
  /** An automatic snapshot `name` taken there at `timestamp`; false for a template (none taken). */
  takeAutomatic(p: string, name: string, timestamp: number): Promise<boolean>;
  list(p: string): Promise<{ template: boolean; snapshots: SnapshotInfo[] }>;
  remove(p: string, name: string): Promise<void>;
}

export class SnapshotScheduler {
  private jobs: schedule.Job[] = [];
  private readonly running = new Serial();
  /** path → the router whose delegated vDisk's scrub was skipped (said once). */
  private readonly scrubSkipped = new Map<string, string>();

  constructor(private readonly pool: VPool, private readonly clock: () => number = Date.now, private readonly delegates?: DelegatedSnapshots) {}

  /** (Re)schedules from `cfg` (defaults for missing keys). INVALID for a bad spec, with the old jobs kept. */
  apply(cfg: ScheduleConfig = {}): void {
    const snap = checkCron(cfg.snapshot === undefined ? DEFAULT_SCHEDULE.snapshot : cfg.snapshot, 'schedule.snapshot');
    const ret = checkCron(cfg.retention === undefined ? DEFAULT_SCHEDULE.retention : cfg.retention, 'schedule.retention');
    const scr = checkCron(cfg.scrub === undefined ? DEFAULT_SCHEDULE.scrub : cfg.scrub, 'schedule.scrub');
    this.stop();
    if (snap !== null) this.jobs.push(schedule.scheduleJob(snap, () => void this.serial(() => this.takeAutomatic())));
    if (ret !== null) this.jobs.push(schedule.scheduleJob(ret, () => void this.serial(() => this.applyRetention())));
    if (scr !== null) this.jobs.push(schedule.scheduleJob(scr, () => void this.serial(() => this.scrubAll())));
    log.info('snapshot schedules', { snapshot: snap, retention: ret, scrub: scr });
  }

  /** An automatic snapshot of every vDisk but templates, named `auto-<UTC stamp>`. Failures are logged, not thrown. */
  async takeAutomatic(): Promise<{ taken: number; failed: number }> {
    const now = this.clock();
    let taken = 0;
    let failed = 0;
    for (const p of vdiskPaths(this.pool)) {
      const via = this.delegates?.routerOf(p);
      try {
        if (via !== undefined) {
          if (!await this.delegates!.takeAutomatic(p, `auto-${stamp(now)}`, now)) continue;
          log.info(`automatic snapshot of delegated vDisk ${p} taken by router '${via}'`, { path: p, router: via, name: `auto-${stamp(now)}` });
          taken++;
          continue;
        }
        if (this.pool.vdisk(p).info().template) continue;
        await this.pool.snapshots.create(p, `auto-${stamp(now)}`, { automatic: true, timestamp: now });
        taken++;
      } catch (err) {
        failed++;
        log.warn('automatic snapshot failed', { path: p, router: via, error: (err as Error).message });
      }
    }
    log.info('automatic snapshots taken', { taken, failed });
    return { taken, failed };
  }

  /** Applies retentionPlan() to every vDisk. Failures are logged, not thrown. */
  async applyRetention(): Promise<{ deleted: number; failed: number }> {
    const now = this.clock();
    let deleted = 0;
    let failed = 0;
    for (const p of vdiskPaths(this.pool)) {
      const via = this.delegates?.routerOf(p);
      let plan: string[];
      try {
        const { template, snapshots } = via !== undefined ? await this.delegates!.list(p) : { template: this.pool.vdisk(p).info().template, snapshots: this.pool.snapshots.list(p) };
        if (template) continue;
        plan = retentionPlan(snapshots, now);
      } catch (err) {
        if (via !== undefined) {
          failed++;
          log.warn(`retention could not list the snapshots of delegated vDisk ${p} on router '${via}'`, { path: p, router: via, error: (err as Error).message });
        }
        continue;
      }
      for (const name of plan) {
        try {
          await (via !== undefined ? this.delegates!.remove(p, name) : this.pool.snapshots.remove(p, name));
          deleted++;
        } catch (err) {
          failed++;
          log.warn('retention could not delete a snapshot', { path: p, name, router: via, error: (err as Error).message });
        }
      }
      if (via !== undefined && plan.length > 0) log.info(`retention deleted ${plan.length} snapshot(s) of delegated vDisk ${p} on router '${via}'`, { path: p, router: via, names: plan });
    }
    log.info('snapshot retention applied', { deleted, failed });
    return { deleted, failed };
  }

  /** Scrubs every vDisk (docs/scrubbing.md). Failures (a scrub already running, a stale result) are logged, not thrown. */
  async scrubAll(): Promise<{ scrubbed: number; failed: number; freedBytes: number }> {
    let scrubbed = 0;
    let failed = 0;
    let freedBytes = 0;
    for (const p of vdiskPaths(this.pool)) {
      const via = this.delegates?.routerOf(p);
      if (via !== undefined) {
        if (this.scrubSkipped.get(p) !== via) log.info(`scheduled scrub skips vDisk ${p}: it is delegated to router '${via}' (its scrubs run on the vPool's owner, once it is moved back)`, { path: p, router: via });
        this.scrubSkipped.set(p, via);
        continue;
      }
      this.scrubSkipped.delete(p);
      try {
        const r = await this.pool.scrub.scrub(p);
        scrubbed++;
        freedBytes += r.swept.bytes;
      } catch (err) {
        failed++;
        log.warn('scheduled scrub failed', { path: p, error: (err as Error).message });
      }
    }
    log.info('scheduled scrub done', { scrubbed, failed, freedBytes });
    return { scrubbed, failed, freedBytes };
  }

  /** Cancels the jobs (a run in progress finishes). */
  stop(): void {
    for (const j of this.jobs) j.cancel();
    this.jobs = [];
  }

  /** Waits for a run in progress. */
  async idle(): Promise<void> {
    await this.running.idle();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.running.run(fn);
  }
}
