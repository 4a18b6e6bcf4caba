/**
 * The one lock helper: a FIFO queue of async jobs. `run(fn)` starts `fn` once every job queued before it
 * has settled (resolved or rejected) and returns its result; a failed job does not block the next one.
 * Used for a vDisk's lock (volume/vdisk/vdisk.ts exclusive()), the vPool's tree changes, the snapshot
 * scheduler's jobs and the in-memory metadata store's writes.
 */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  private held = false;

  /** True while a job runs. */
  get busy(): boolean {
    return this.held;
  }

  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const job = this.tail.then(async () => {
      this.held = true;
      try {
        return await fn();
      } finally {
        this.held = false;
      }
    });
    this.tail = job.catch(() => undefined);
    return job;
  }

  /** Resolves once every job queued so far has settled (never rejects). */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
