/** The map of one write cache's open SCO descriptors (cache-files.ts `fds`). */
import { scoFdBudget, type FdOwner } from './sco-fd-budget.js';

/**
 * SCO number → open descriptor, telling `watch` of every change (ReaderView.fdChanged: the kernel engine's
 * reader threads pread these descriptors, reader-view.ts) and the process-wide budget of SCO descriptors
 * (sco-fd-budget.ts) of every one opened, used and closed.
 */
export class ScoFds extends Map<number, number> {
  watch: ((sco: number, fd: number | null) => void) | undefined;

  constructor(private readonly owner: FdOwner) {
    super();
  }

  override set(sco: number, fd: number): this {
    super.set(sco, fd);
    this.watch?.(sco, fd);
    scoFdBudget.use(this.owner, sco); // past the budget, the least recently used descriptors are dropped
    return this;
  }

  /** The descriptor of `sco`, if open, marked as just used (the budget drops the least recently used). */
  use(sco: number): number | undefined {
    const fd = super.get(sco);
    if (fd !== undefined) scoFdBudget.use(this.owner, sco);
    return fd;
  }

  override delete(sco: number): boolean {
    const had = super.delete(sco);
    if (had) {
      scoFdBudget.forget(this.owner, sco);
      this.watch?.(sco, null);
    }
    return had;
  }

  override clear(): void {
    for (const sco of [...this.keys()]) this.delete(sco);
  }
}
