/**
 * The one lock helper: a FIFO queue of async jobs. `run(fn)` starts `fn` once every job queued before it
 * has settled (resolved or rejected) and returns its result; a failed job does not block the next one.
 * Used for a vDisk's lock (volume/vdisk/vdisk.ts exclusive()), the vPool's tree changes, the snapshot
 * scheduler's jobs and the in-memory metadata store's writes. `KeyedSerial` is one such queue per key
 * (a backend object's rewrite against the vPool's own writes of it: volume/backend/encrypted-store.ts,
 * volume/policy/mirror-store.ts).
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

/** One FIFO queue per key, dropped once it is empty: `run(key, fn)` waits for every earlier job of that key. */
export class KeyedSerial {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return run;
  }

  /** Resolves once every job queued so far, of every key, has settled (never rejects). */
  async idle(): Promise<void> {
    await Promise.all([...this.tails.values()]);
  }
}
