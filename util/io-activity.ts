/**
 * A vDisk's own I/O as a background job sees it: how many guest reads, writes and discards are in flight,
 * and when the last one ended. The scrubber backs off while the vDisk is busy (volume/scrub/throttle.ts);
 * counting costs an increment and a clock read per I/O.
 */
export class IoActivity {
  private inFlight = 0;
  private lastEnd = -Infinity;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** An I/O starts; call the returned function once it has settled (a second call does nothing). */
  begin(): () => void {
    this.inFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight--;
      this.lastEnd = this.now();
    };
  }

  /** An I/O that was over as soon as it started (a read served from the caches). */
  touch(): void {
    this.lastEnd = this.now();
  }

  get pending(): number {
    return this.inFlight;
  }

  /** True while I/O is in flight, or some ended less than `recentMs` ago. */
  busy(recentMs: number): boolean {
    return this.inFlight > 0 || this.now() - this.lastEnd < recentMs;
  }
}
