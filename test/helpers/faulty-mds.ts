/**
 * A MetadataStore wrapper for the durability tests: a commit (or deletePrefix) fails on demand with the
 * MetadataError lmdb-store.ts would raise (NO_SPACE for a full disk, BACKEND for EIO), and freeze() makes
 * every later write hang for ever (the process "died": nothing more reaches the store). Reads pass through.
 */
import { MetadataError } from '../../util/errors.js';
import type { MetadataOp, MetadataStore } from '../../mds/types.js';

export class FaultyMds implements MetadataStore {
  /** Commits failed on purpose so far. */
  failed = 0;
  /** Commits that reached the wrapped store. */
  commits = 0;
  /** Runs before each commit reaches the store (tests check invariants there). */
  onCommit: (ops: ReadonlyArray<MetadataOp>) => void = () => {};
  private rules: Array<{ code: 'NO_SPACE' | 'BACKEND'; left: number; match: (ops: ReadonlyArray<MetadataOp>) => boolean }> = [];
  private frozen = false;

  /** `keepOpen`: close() leaves the wrapped store open (it outlives this "boot" in power-cut tests). */
  constructor(readonly inner: MetadataStore, private readonly keepOpen = false) {}

  /** The next `count` commits that `match` accepts fail: 'NO_SPACE' (ENOSPC) or 'BACKEND' (EIO). */
  failNext(code: 'NO_SPACE' | 'BACKEND', opts: { count?: number; match?: (ops: ReadonlyArray<MetadataOp>) => boolean } = {}): void {
    this.rules.push({ code, left: opts.count ?? 1, match: opts.match ?? (() => true) });
  }

  freeze(): void {
    this.frozen = true;
  }

  get(key: string): Buffer | undefined {
    return this.inner.get(key);
  }

  range(prefix: string): Iterable<[string, Buffer]> {
    return this.inner.range(prefix);
  }

  async commit(ops: ReadonlyArray<MetadataOp>): Promise<void> {
    if (this.frozen) return new Promise<void>(() => {});
    this.check(ops);
    this.onCommit(ops);
    this.commits++;
    await this.inner.commit(ops);
  }

  async deletePrefix(prefix: string): Promise<void> {
    if (this.frozen) return new Promise<void>(() => {});
    this.check([{ key: prefix, value: null }]);
    await this.inner.deletePrefix(prefix);
  }

  close(): Promise<void> {
    if (this.frozen || this.keepOpen) return Promise.resolve();
    return this.inner.close();
  }

  private check(ops: ReadonlyArray<MetadataOp>): void {
    const i = this.rules.findIndex((r) => r.left > 0 && r.match(ops));
    if (i < 0) return;
    const r = this.rules[i];
    if (--r.left === 0) this.rules.splice(i, 1);
    this.failed++;
    const why = r.code === 'NO_SPACE' ? 'MDB_MAP_FULL / No space left on device (injected)' : 'Input/output error (injected)';
    throw new MetadataError(r.code, `metadata store commit failed: ${why}`, { keys: ops.slice(0, 3).map((o) => o.key) });
  }
}
