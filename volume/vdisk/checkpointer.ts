/**
 * When a vDisk writes its map checkpoint (../lineage/map-checkpoint.ts): in the background once
 * `checkpointEveryTlogs` TLogs were corked since the last one (or since the rebuild that replayed that
 * many), at once after a change of the chain (a scrub's apply, a rollback: the old checkpoints no longer fit),
 * and at a clean stop when any TLog came since. One job at a time per vDisk, two at a time per vPool (per
 * vPool, not per process: a job stuck on a backend that never answers holds its permit); a
 * failure (the backend away, a TLog the sweep just deleted) is logged and the next trigger tries again.
 * After a local restart the count starts at 0: a crash loop can leave up to two periods uncovered.
 */
import { logger } from '../../util/log.js';
import { writeCheckpoint } from '../lineage/checkpoint-job.js';
import type { ChainDoc } from '../lineage/chain.js';
import type { VDiskContext } from './vdisk-context.js';

const log = logger('checkpoint');
/** Checkpoint jobs at once across the vDisks of a vPool (each reads TLogs and writes a map's worth): VDiskContext.checkpointJobs. */
export const CHECKPOINT_JOBS = 2;

/** Default TLogs between two checkpoints (a TLog is 16 SCOs of 4 MiB when full, fewer when the age timer closes it). */
export const DEFAULT_CHECKPOINT_EVERY_TLOGS = 128;

export interface CheckpointOwner {
  readonly id: string;
  readonly ctx: VDiskContext;
  readonly corkedTlog: number;
  readonly docs: { readonly doc: ChainDoc };
}

export class Checkpointer {
  /** TLogs corked (or replayed by the rebuild) that no checkpoint covers yet, as far as this process knows. */
  private since = 0;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  /** Checkpoints written by this vDisk since it opened (tests, logs). */
  written = 0;

  constructor(private readonly v: CheckpointOwner) {}

  private get every(): number {
    return this.v.ctx.checkpointEveryTlogs ?? DEFAULT_CHECKPOINT_EVERY_TLOGS;
  }

  /** A TLog was corked (or `n` were replayed by a rebuild without a checkpoint covering them). */
  noteTlogs(n = 1): void {
    this.since += n;
    if (this.every > 0 && this.since >= this.every) this.kick();
  }

  /** The chain changed under the existing checkpoints (scrub applied, rollback): write one soon. */
  chainChanged(): void {
    this.since = Math.max(this.since, 1);
    if (this.every > 0) this.kick();
  }

  /** A clean stop: wait for a running job, then write one if any TLog came since the last. */
  async flush(): Promise<void> {
    while (this.running !== null) await this.running;
    if (this.every > 0 && this.since > 0 && !this.stopped) {
      this.kick();
      await this.running;
    }
  }

  stop(): void {
    this.stopped = true;
  }

  /** Resolves once no job runs (after stop(): the vDisk is being removed, its backend objects go next). */
  async settled(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.running !== null) {
      this.again = true;
      return;
    }
    this.running = this.v.ctx.checkpointJobs.run(() => this.run()).finally(() => {
      this.running = null;
      if (this.again && !this.stopped) {
        this.again = false;
        if (this.since > 0) this.kick();
      }
    });
  }

  private async run(): Promise<void> {
    const { v } = this;
    if (this.stopped || v.ctx.fenced?.() != null) return;
    const counted = this.since;
    try {
      const done = await writeCheckpoint(v.ctx.backend, v.id, v.docs.doc, v.corkedTlog, { router: v.ctx.routerId, log, cancelled: () => this.stopped });
      this.since = Math.max(0, this.since - counted);
      if (done === null) return;
      this.written++;
      log.info('map checkpoint written', { vdisk: v.id, object: done.key, chainItems: done.items, replayed: done.replayed, ms: done.ms });
    } catch (err) {
      if (!this.stopped) log.warn('writing a map checkpoint failed; tried again at the next trigger', { vdisk: v.id, error: String((err as Error)?.message ?? err) });
    }
  }
}
