/**
 * The reference a vDisk is compared with in model-based tests: a plain, obviously-right sparse disk
 * (one Buffer per written 4 KiB cluster) with the same semantics — holes read as zeros, size exactly as
 * set, a shrink discards past the new size, a discard zeros its range and frees the clusters it leaves
 * all zeros, allocated = clusters written into this disk itself and not discarded (a clone's clusters read
 * through from its parent are inherited, not its own).
 */
const CS = 4096;

export class RefDisk {
  size = 0;
  readonly clusters = new Map<number, Buffer>();
  /** Clusters written into this disk (not inherited from a parent it was cloned from). */
  readonly own = new Set<number>();

  write(offset: number, data: Uint8Array): void {
    let pos = 0;
    while (pos < data.length) {
      const off = offset + pos;
      const a = Math.floor(off / CS);
      const within = off - a * CS;
      const n = Math.min(CS - within, data.length - pos);
      let c = this.clusters.get(a);
      if (c === undefined) {
        c = Buffer.alloc(CS);
        this.clusters.set(a, c);
      }
      c.set(data.subarray(pos, pos + n), within);
      this.own.add(a);
      pos += n;
    }
    this.size = Math.max(this.size, offset + data.length);
  }

  read(offset: number, length: number): Buffer {
    if (offset >= this.size) return Buffer.alloc(0);
    const out = Buffer.alloc(Math.min(this.size, offset + length) - offset);
    let pos = 0;
    while (pos < out.length) {
      const off = offset + pos;
      const a = Math.floor(off / CS);
      const within = off - a * CS;
      const n = Math.min(CS - within, out.length - pos);
      const c = this.clusters.get(a);
      if (c !== undefined) c.copy(out, pos, within, within + n);
      pos += n;
    }
    return out;
  }

  resize(size: number): void {
    if (size < this.size) {
      const keep = Math.ceil(size / CS);
      for (const a of [...this.clusters.keys()]) if (a >= keep) {
        this.clusters.delete(a);
        this.own.delete(a);
      }
      const tail = size % CS;
      const c = this.clusters.get(Math.floor(size / CS));
      if (tail !== 0 && c !== undefined) c.fill(0, tail);
    }
    this.size = size;
  }

  /**
   * Zeros offset..offset+length (within the size); a cluster left all zeros by it is freed, as the vDisk
   * frees it (VDisk.discard: whole clusters are unmapped, an edge cluster too when nothing else is left).
   */
  discard(offset: number, length: number): void {
    const end = offset + length;
    const first = Math.floor(offset / CS);
    const last = Math.floor((end - 1) / CS);
    const touched = last - first + 1 > this.clusters.size ? [...this.clusters.keys()].filter((a) => a >= first && a <= last) : Array.from({ length: last - first + 1 }, (_, i) => first + i);
    for (const a of touched) {
      const c = this.clusters.get(a);
      if (c === undefined) continue;
      c.fill(0, Math.max(offset - a * CS, 0), Math.min(end - a * CS, CS));
      if (c.every((b) => b === 0)) {
        this.clusters.delete(a);
        this.own.delete(a);
      } else this.own.add(a); // a partly zeroed cluster is rewritten: the vDisk's own from then on
    }
  }

  /** Bytes of the clusters this disk wrote itself (what `du` counts). */
  get allocatedBytes(): number {
    return this.own.size * CS;
  }

  /** Bytes of the clusters read through from a parent. */
  get inheritedBytes(): number {
    return (this.clusters.size - this.own.size) * CS;
  }

  /** A copy of this disk's state (a snapshot of it, or the state before an operation). */
  clone(): RefDisk {
    const r = new RefDisk();
    r.size = this.size;
    for (const [a, c] of this.clusters) r.clusters.set(a, Buffer.from(c));
    for (const a of this.own) r.own.add(a);
    return r;
  }

  /** A vDisk cloned from this state: the same data, all of it inherited. */
  cloneChild(): RefDisk {
    const r = this.clone();
    r.own.clear();
    return r;
  }
}

/** A small seeded PRNG (mulberry32): the same seed gives the same run. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Bytes derived from (seed, n): what a write of op n carries, reproducible by a checker. */
export function pattern(seed: number, n: number, length: number): Buffer {
  const r = rng((seed * 7919 + n * 104729) >>> 0);
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += 4) {
    const v = (r() * 4294967296) >>> 0;
    for (let k = 0; k < 4 && i + k < length; k++) b[i + k] = (v >>> (k * 8)) & 0xff;
  }
  return b;
}

/** A snapshot in the model: its name, the disk as it was, and how many clones were made from it. */
export interface RefSnapshot {
  name: string;
  ref: RefDisk;
  clones: number;
}

/**
 * The model of the snapshot rules: per vDisk, its snapshots oldest first (each a frozen RefDisk). Rollback
 * restores a copy and drops the later ones; delete removes one; a snapshot with clones cannot be deleted
 * or rolled over; a clone starts as a copy of its snapshot.
 */
export class RefSnapshots {
  readonly byDisk = new Map<string, RefSnapshot[]>();

  list(path: string): RefSnapshot[] {
    let l = this.byDisk.get(path);
    if (l === undefined) {
      l = [];
      this.byDisk.set(path, l);
    }
    return l;
  }

  take(path: string, name: string, disk: RefDisk): RefSnapshot {
    const s = { name, ref: disk.clone(), clones: 0 };
    this.list(path).push(s);
    return s;
  }

  /** The disk after a rollback to `name`, or 'BUSY' when a later snapshot has clones. */
  rollback(path: string, name: string): RefDisk | 'BUSY' {
    const l = this.list(path);
    const i = l.findIndex((s) => s.name === name);
    if (l.slice(i + 1).some((s) => s.clones > 0)) return 'BUSY';
    l.splice(i + 1);
    return l[i].ref.clone();
  }

  /** Removes `name`; 'BUSY' if it has clones. */
  remove(path: string, name: string): 'OK' | 'BUSY' {
    const l = this.list(path);
    const i = l.findIndex((s) => s.name === name);
    if (l[i].clones > 0) return 'BUSY';
    l.splice(i, 1);
    return 'OK';
  }
}
