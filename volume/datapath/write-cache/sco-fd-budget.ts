/**
 * The process-wide bound on the descriptors the write caches keep open on their SCO files (sco-fds.ts).
 * A write cache used to keep one descriptor per local SCO: with small SCOs and a backend slower than the
 * writer, 10,000 local SCOs were 10,000 descriptors and the process hit EMFILE (a fault: the vDisk took no
 * more writes). Now every descriptor a write cache opens is registered here, in least-recently-used order
 * across all vDisks of the process; past the budget the oldest is handed back to its cache, which closes
 * it (cache-sync.ts dropFd: out of the reader threads' view first, synced first if its writes are not, and
 * closed once the syncs in flight settle) — a later read opens the file again. A cache refuses to drop its
 * open SCO (it is written through that descriptor); it is then moved to the young end.
 *
 * The budget: VPOOLFS_SCO_FDS if set, else a quarter of the process's soft RLIMIT_NOFILE (the rest is for
 * the read cache's pieces, backend objects read in place, lmdb, sockets, the DTL, FUSE), 32 to 8192.
 */
import fs from 'node:fs';

export interface FdOwner {
  /** Close the descriptor of SCO `sco` (it is in the budget); false if it cannot be now (the open SCO). */
  dropFd(sco: number): boolean;
}

/** The soft and hard RLIMIT_NOFILE of this process (/proc/self/limits), or null where it cannot be read. */
export function nofileLimits(): { soft: number; hard: number } | null {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const m = line === undefined ? null : /Max open files\s+(\S+)\s+(\S+)/.exec(line);
    if (m === null) return null;
    const n = (s: string): number => (s === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(s));
    return { soft: n(m[1]), hard: n(m[2]) };
  } catch {
    return null;
  }
}

/** The budget for a soft RLIMIT_NOFILE of `soft` (see the header). */
export function budgetFor(soft: number): number {
  return Math.max(32, Math.min(8192, Math.floor(soft / 4)));
}

function initialLimit(): number {
  const env = process.env.VPOOLFS_SCO_FDS;
  if (env !== undefined && /^\d+$/.test(env) && Number(env) > 0) return Number(env);
  return budgetFor(nofileLimits()?.soft ?? 1024);
}

interface Entry {
  owner: FdOwner;
  sco: number;
}

/** Owners are numbered so that (owner, SCO) is one numeric key: no string built on the read path. */
const ownerIds = new WeakMap<FdOwner, number>();
let nextOwner = 1;
const SCO_SPAN = 2 ** 32; // SCO numbers are u32

class ScoFdBudget {
  limit = initialLimit();
  /** Insertion order is use order: the first entry is the least recently used. */
  private readonly entries = new Map<number, Entry>();
  /** Descriptors dropped to stay within the budget (a test and the metrics look at it). */
  dropped = 0;

  private key(owner: FdOwner, sco: number): number {
    let id = ownerIds.get(owner);
    if (id === undefined) {
      id = nextOwner++;
      ownerIds.set(owner, id);
    }
    return id * SCO_SPAN + sco;
  }

  /** `owner` opened a descriptor for `sco` (or used it again): the young end; past the budget the oldest go. */
  use(owner: FdOwner, sco: number): void {
    const k = this.key(owner, sco);
    const e = this.entries.get(k);
    if (e !== undefined) this.entries.delete(k);
    this.entries.set(k, e ?? { owner, sco });
    if (e === undefined) this.trim();
  }

  /** `owner` closed the descriptor of `sco` itself (eviction, its cache closed). */
  forget(owner: FdOwner, sco: number): void {
    this.entries.delete(this.key(owner, sco));
  }

  get open(): number {
    return this.entries.size;
  }

  private trim(): void {
    // each refusal moves one entry to the young end: at most one pass over the entries, never reaching the
    // one just opened (its caller reads through it next)
    for (let tries = this.entries.size - 1; this.entries.size > this.limit && tries > 0; tries--) {
      const [k, e] = this.entries.entries().next().value as [number, Entry];
      this.entries.delete(k);
      if (e.owner.dropFd(e.sco)) this.dropped++;
      else this.entries.set(k, e);
    }
  }
}

export const scoFdBudget = new ScoFdBudget();
