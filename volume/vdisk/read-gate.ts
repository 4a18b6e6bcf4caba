/**
 * Reads in flight on a vDisk, by epoch: the scrub's apply moves the cluster map, then waits (`drain`) for
 * every read that started before the move to finish before the old SCOs may be deleted — a read planned
 * on the old map may still be fetching one of them.
 */
export class ReadGate {
  private epoch = 0;
  private readonly inFlight = new Map<number, number>();
  private waiters: Array<{ epoch: number; resolve: () => void }> = [];

  /** A read starts; call the returned function when it has settled. */
  enter(): () => void {
    const e = this.epoch;
    this.inFlight.set(e, (this.inFlight.get(e) ?? 0) + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const n = this.inFlight.get(e)! - 1;
      if (n === 0) this.inFlight.delete(e);
      else this.inFlight.set(e, n);
      this.wake();
    };
  }

  /** Resolves once every read that entered before this call has left. */
  drain(): Promise<void> {
    const epoch = this.epoch++;
    if (this.oldest() > epoch) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ epoch, resolve }));
  }

  private oldest(): number {
    let m = Infinity;
    for (const e of this.inFlight.keys()) m = Math.min(m, e);
    return m;
  }

  private wake(): void {
    const oldest = this.oldest();
    const ready = this.waiters.filter((w) => oldest > w.epoch);
    this.waiters = this.waiters.filter((w) => oldest <= w.epoch);
    for (const w of ready) w.resolve();
  }
}

