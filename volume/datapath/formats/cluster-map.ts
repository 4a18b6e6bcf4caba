/**
 * The cluster map of one vDisk: for each cluster address (offset / 4096), where its data is.
 *
 * Compact by design (no JS object per cluster): entries live in pages of 1024 clusters, each page one
 * Uint32Array of 2 words per entry, allocated only when a cluster in its range is written. A fully written
 * 10 GiB vDisk takes 2,560 pages × 8 KiB = 20 MiB.
 *
 * Pages live in SharedArrayBuffers: the kernel engine's reader threads read them (reader-view.ts). `onPage`
 * hears of every page created, replaced or dropped, at once (before the write that made it is acknowledged).
 *
 * Entry (8 bytes, after Open vStorage's ClusterLocation):
 *   word 0: SCO number (0 = not written: SCO numbers start at 1)
 *   word 1: bits 0–15 slot in the SCO, bits 16–23 clone depth (0 = this vDisk's own namespace), 24–31 flags
 */
export const PAGE_CLUSTERS = 1024;
const PAGE_SHIFT = 10;
const PAGE_MASK = PAGE_CLUSTERS - 1;
/** The depth bits of word 1. */
const DEPTH_MASK = 0xff << 16;

export interface ClusterLocation {
  sco: number;
  slot: number;
  depth: number;
}

/** A zeroed page on shared memory. */
function newPage(): Uint32Array {
  return new Uint32Array(new SharedArrayBuffer(PAGE_CLUSTERS * 8));
}

export class ClusterMap {
  private readonly pages = new Map<number, Uint32Array>();
  /** Told every page created or replaced (its words) or dropped (null): ReaderView.pageChanged. */
  onPage: ((pageNo: number, words: Uint32Array | null) => void) | undefined;
  private readonly dirty = new Set<number>();
  private mapped = 0;
  /** Mapped clusters whose depth is above 0: a clone's data read through from an ancestor. */
  private inherited = 0;

  /** Number of clusters that hold data. */
  get mappedClusters(): number {
    return this.mapped;
  }

  /** Mapped clusters of an ancestor's namespace (depth > 0): the data a clone reads through, not its own. */
  get inheritedClusters(): number {
    return this.inherited;
  }

  /** Mapped clusters of this vDisk's own namespace (depth 0): what it wrote itself. */
  get ownClusters(): number {
    return this.mapped - this.inherited;
  }

  /** The location of `address`, or null if the cluster was never written (or was discarded). */
  get(address: number): ClusterLocation | null {
    const page = this.pages.get(Math.floor(address / PAGE_CLUSTERS));
    if (page === undefined) return null;
    const i = (address & PAGE_MASK) * 2;
    const sco = page[i];
    if (sco === 0) return null;
    const w1 = page[i + 1];
    return { sco, slot: w1 & 0xffff, depth: (w1 >>> 16) & 0xff };
  }

  /** Raw access for hot loops: the SCO number (0 = unmapped) of `address`. */
  scoOf(address: number): number {
    const page = this.pages.get(Math.floor(address / PAGE_CLUSTERS));
    return page === undefined ? 0 : page[(address & PAGE_MASK) * 2];
  }

  /** Raw access for hot loops: word 1 (slot | depth << 16) of `address`. */
  word1Of(address: number): number {
    const page = this.pages.get(Math.floor(address / PAGE_CLUSTERS));
    return page === undefined ? 0 : page[(address & PAGE_MASK) * 2 + 1];
  }

  set(address: number, sco: number, slot: number, depth = 0): void {
    const pageNo = Math.floor(address / PAGE_CLUSTERS);
    let page = this.pages.get(pageNo);
    if (page === undefined) {
      page = newPage();
      this.pages.set(pageNo, page);
      this.onPage?.(pageNo, page);
    }
    const i = (address & PAGE_MASK) * 2;
    if (page[i] === 0) this.mapped++;
    else if (page[i + 1] & DEPTH_MASK) this.inherited--;
    if (depth & 0xff) this.inherited++;
    page[i] = sco;
    page[i + 1] = (slot & 0xffff) | ((depth & 0xff) << 16);
    this.dirty.add(pageNo);
  }

  clear(address: number): void {
    const pageNo = Math.floor(address / PAGE_CLUSTERS);
    const page = this.pages.get(pageNo);
    if (page === undefined) return;
    const i = (address & PAGE_MASK) * 2;
    if (page[i] === 0) return;
    if (page[i + 1] & DEPTH_MASK) this.inherited--;
    page[i] = 0;
    page[i + 1] = 0;
    this.mapped--;
    this.dirty.add(pageNo);
  }

  /** Unmaps clusters first..first+count-1 (a discard); returns how many were mapped. */
  clearRange(first: number, count: number): number {
    let cleared = 0;
    this.forRange(first, count, (pageNo, page, k) => {
      if (page[k * 2 + 1] & DEPTH_MASK) this.inherited--;
      page[k * 2] = 0;
      page[k * 2 + 1] = 0;
      this.dirty.add(pageNo);
      cleared++;
    });
    this.mapped -= cleared;
    return cleared;
  }

  /** True when some cluster in first..first+count-1 is mapped. */
  anyMappedIn(first: number, count: number): boolean {
    let found = false;
    this.forRange(first, count, () => {
      found = true;
      return true;
    });
    return found;
  }

  /** The mapped addresses in first..first+count-1, in address order. */
  mappedIn(first: number, count: number): number[] {
    const out: number[] = [];
    this.forRange(first, count, (pageNo, _page, k) => {
      out.push(pageNo * PAGE_CLUSTERS + k);
    });
    return out;
  }

  /**
   * Calls `fn` for each mapped entry in first..first+count-1, in address order, until it returns true. Walks only the pages that
   * exist, so a TRIM of a huge never-written range (an fstrim of the free space) costs next to nothing.
   */
  private forRange(first: number, count: number, fn: (pageNo: number, page: Uint32Array, k: number) => boolean | void): void {
    if (count <= 0) return;
    const end = first + count;
    const firstPage = Math.floor(first / PAGE_CLUSTERS);
    const lastPage = Math.floor((end - 1) / PAGE_CLUSTERS);
    const pageNos = lastPage - firstPage + 1 <= this.pages.size
      ? Array.from({ length: lastPage - firstPage + 1 }, (_, i) => firstPage + i).filter((p) => this.pages.has(p))
      : [...this.pages.keys()].filter((p) => p >= firstPage && p <= lastPage).sort((a, b) => a - b);
    for (const pageNo of pageNos) {
      const page = this.pages.get(pageNo)!;
      const base = pageNo * PAGE_CLUSTERS;
      const to = Math.min(end, base + PAGE_CLUSTERS) - base;
      for (let k = Math.max(first, base) - base; k < to; k++) if (page[k * 2] !== 0 && fn(pageNo, page, k) === true) return;
    }
  }

  /** Discards every cluster at or beyond `address` (a shrink). */
  clearFrom(address: number): void {
    const first = Math.floor(address / PAGE_CLUSTERS);
    for (const [pageNo, page] of this.pages) {
      if (pageNo < first) continue;
      const start = pageNo === first ? (address & PAGE_MASK) : 0;
      for (let k = start; k < PAGE_CLUSTERS; k++) {
        if (page[k * 2] !== 0) {
          if (page[k * 2 + 1] & DEPTH_MASK) this.inherited--;
          page[k * 2] = 0;
          page[k * 2 + 1] = 0;
          this.mapped--;
        }
      }
      if (start === 0) {
        this.pages.delete(pageNo);
        this.onPage?.(pageNo, null);
      }
      this.dirty.add(pageNo);
    }
  }

  /** Pages changed since the last takeDirty(), with their current contents (null = page now empty). */
  takeDirty(): Array<[number, Uint32Array | null]> {
    const out: Array<[number, Uint32Array | null]> = [];
    for (const pageNo of this.dirty) out.push([pageNo, this.pages.get(pageNo) ?? null]);
    this.dirty.clear();
    return out;
  }

  /**
   * Marks pages dirty again: a commit of what takeDirty() returned failed, so the next one must carry them
   * (else it would persist a cork point past changes the store never got).
   */
  markDirty(pageNos: Iterable<number>): void {
    for (const pageNo of pageNos) this.dirty.add(pageNo);
  }

  /** Loads a persisted page (from the metadata store). */
  loadPage(pageNo: number, words: Uint32Array): void {
    if (words.length !== PAGE_CLUSTERS * 2) throw new Error(`cluster map page ${pageNo} has ${words.length} words`);
    const old = this.pages.get(pageNo);
    if (old !== undefined) for (let k = 0; k < PAGE_CLUSTERS; k++) if (old[k * 2] !== 0) {
      this.mapped--;
      if (old[k * 2 + 1] & DEPTH_MASK) this.inherited--;
    }
    const page = newPage();
    page.set(words);
    for (let k = 0; k < PAGE_CLUSTERS; k++) if (page[k * 2] !== 0) {
      this.mapped++;
      if (page[k * 2 + 1] & DEPTH_MASK) this.inherited++;
    }
    this.pages.set(pageNo, page);
    this.onPage?.(pageNo, page);
  }

  /** The pages (number, words) as they are: what a reader thread starts from (reader-view.ts). */
  allPages(): IterableIterator<[number, Uint32Array]> {
    return this.pages.entries();
  }

  /** Every mapped entry, in address order (for tests and scrubbing). */
  *entries(): Generator<[number, ClusterLocation]> {
    const pageNos = [...this.pages.keys()].sort((a, b) => a - b);
    for (const pageNo of pageNos) {
      const page = this.pages.get(pageNo)!;
      for (let k = 0; k < PAGE_CLUSTERS; k++) {
        if (page[k * 2] !== 0) {
          const w1 = page[k * 2 + 1];
          yield [pageNo * PAGE_CLUSTERS + k, { sco: page[k * 2], slot: w1 & 0xffff, depth: (w1 >>> 16) & 0xff }];
        }
      }
    }
  }

  /** The allocated pages, in page order, as they are (a map checkpoint's encoding, ../lineage/map-checkpoint.ts). */
  *rawPages(): Generator<[number, Uint32Array]> {
    for (const pageNo of [...this.pages.keys()].sort((a, b) => a - b)) yield [pageNo, this.pages.get(pageNo)!];
  }

  /** Bytes held by the pages (the dominant cost; Map overhead is a few dozen bytes a page). */
  memoryBytes(): number {
    return this.pages.size * (PAGE_CLUSTERS * 2 * 4 + 64);
  }

  get pageCount(): number {
    return this.pages.size;
  }
}

export { PAGE_SHIFT };
