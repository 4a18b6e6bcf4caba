/**
 * A vDisk's own I/O as a background job sees it: how many guest reads, writes and discards are in flight,
 * and when the last one ended. The scrubber backs off while the vDisk is busy (volume/scrub/throttle.ts);
 * counting costs an increment and a clock read per I/O.
 */
export class IoActivity {
  private inFlight = 0;
  private lastEnd = -Infinity;
  /** I/O counted elsewhere (the kernel engine's reader threads), and its count when last looked at. */
  private elsewhere: (() => number) | undefined;
  private seen = 0;

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

  /**
   * I/O served outside this object, counted by `count` (READs answered in the kernel engine's reader threads,
   * volume/datapath/write-cache/reader-view.ts): when the count has moved since it was last looked at, an I/O counts as
   * just ended (a little late: the moment it is noticed, which only makes a background job back off longer).
   */
  watch(count: () => number): void {
    this.elsewhere = count;
    this.seen = count();
  }

  get pending(): number {
    return this.inFlight;
  }

  /** True while I/O is in flight, or some ended less than `recentMs` ago. */
  busy(recentMs: number): boolean {
    if (this.elsewhere !== undefined) {
      const n = this.elsewhere();
      if (n !== this.seen) {
        this.seen = n;
        this.lastEnd = this.now();
      }
    }
    return this.inFlight > 0 || this.now() - this.lastEnd < recentMs;
  }
}
