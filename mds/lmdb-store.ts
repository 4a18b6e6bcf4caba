/**
 * LmdbMetadataStore: the real MetadataStore, one lmdb environment in a directory.
 *
 * - Keys: our strings are encoded to UTF-8 by us and stored with `keyEncoding: 'binary'`, so lmdb orders
 *   them by plain UTF-8 bytes as types.ts promises. (lmdb's default 'ordered-binary' string encoding
 *   prefixes keys starting below U+001C with 0x1B and stores '' as 0x1B, which breaks that order.)
 * - Values: `encoding: 'binary'`; copied in at call time and out on every read.
 * - Atomicity: each commit/deletePrefix runs as an lmdb *child* transaction. lmdb-js batches queued
 *   async transactions into one LMDB transaction, and a plain `transaction()` callback that throws
 *   half-way would leave its earlier writes in the batch; a child transaction is aborted instead.
 * - Durability: lmdb-js on Linux defaults to `overlappingSync`, where the transaction promise resolves
 *   when committed (visible, survives a process kill) but before fdatasync. We then await `db.flushed`,
 *   so a resolved commit also survives a host crash. noSync is never set.
 * - Size: lmdb-js grows the map by itself when a transaction needs more pages (checked: a 256 MiB map
 *   took 300 MB of values); INITIAL_MAP_SIZE only avoids early remaps. The file is not preallocated.
 */
import fs from 'node:fs';
import { open, type RootDatabase } from 'lmdb';
import { MetadataError, VpoolError } from '../util/errors.js';
import type { MetadataOp, MetadataStore } from './types.js';
import {
  closedError,
  encodeKey,
  encodePrefix,
  keyPreview,
  MAX_KEY_BYTES,
  prepareOps,
  startsWithBytes,
} from './memory-store.js';

/** Initial map (virtual address space only); lmdb-js doubles it when it runs out. */
const INITIAL_MAP_SIZE = 1024 * 1024 * 1024;

const MDB_MAP_FULL = -30792;
const ENOSPC = 28;
const EDQUOT = 122;

/**
 * Turns an lmdb (or fs) failure into a MetadataError: NO_SPACE for a full map or disk, INVALID for a
 * key lmdb refuses, BACKEND (the metadata backend failed; the FUSE edge reports EIO) for anything else.
 */
export function toMetadataError(err: unknown, op: string, context: Record<string, unknown>): MetadataError {
  if (err instanceof MetadataError) return err;
  if (err instanceof VpoolError) return new MetadataError(err.code, err.message, { ...err.context, ...context, op }, { cause: err });
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = e?.code;
  const ctx = { ...context, op, cause: message };
  if (
    code === MDB_MAP_FULL ||
    code === ENOSPC ||
    code === EDQUOT ||
    code === 'ENOSPC' ||
    code === 'EDQUOT' ||
    /MDB_MAP_FULL|No space left|ENOSPC|quota exceeded/i.test(message)
  ) {
    return new MetadataError(
      'NO_SPACE',
      `metadata store is out of space during ${op} (${message}): free space on the disk holding the metadata directory`,
      ctx,
      { cause: err },
    );
  }
  if (/key size|zero length key|Invalid key/i.test(message)) {
    return new MetadataError('INVALID', `metadata store refused a key during ${op}: ${message}`, ctx, { cause: err });
  }
  return new MetadataError('BACKEND', `metadata store ${op} failed: ${message}`, ctx, { cause: err });
}

export class LmdbMetadataStore implements MetadataStore {
  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly inflight = new Set<Promise<void>>();

  private constructor(
    private readonly db: RootDatabase<Buffer, Buffer>,
    readonly dir: string,
  ) {}

  /** Opens (creating if needed) the lmdb environment in directory `dir`. */
  static open(dir: string): LmdbMetadataStore {
    try {
      fs.mkdirSync(dir, { recursive: true });
      const db = open<Buffer, Buffer>(dir, {
        // lmdb guesses "a file, not a directory" when the last path component has a '.' in it.
        noSubdir: false,
        encoding: 'binary',
        keyEncoding: 'binary',
        mapSize: INITIAL_MAP_SIZE,
      });
      return new LmdbMetadataStore(db, dir);
    } catch (err) {
      throw toMetadataError(err, 'open', { dir });
    }
  }

  get(key: string): Buffer | undefined {
    this.assertOpen('get');
    const bytes = encodeKey(key);
    let value: Buffer | undefined;
    try {
      value = this.db.get(bytes);
    } catch (err) {
      throw toMetadataError(err, 'get', { dir: this.dir, key: keyPreview(key) });
    }
    return value === undefined ? undefined : Buffer.from(value);
  }

  range(prefix: string): Iterable<[string, Buffer]> {
    this.assertOpen('range');
    return this.walk(prefix, encodePrefix(prefix));
  }

  /** getRange from the prefix, stopping at the first key without it; lmdb reads from one snapshot. */
  private *walk(prefix: string, p: Buffer): Generator<[string, Buffer]> {
    if (p.length > MAX_KEY_BYTES) return; // no key can be that long
    let it: Iterator<{ key: Buffer; value: Buffer }>;
    try {
      it = this.db.getRange(p.length > 0 ? { start: p } : {})[Symbol.iterator]();
    } catch (err) {
      throw toMetadataError(err, 'range', { dir: this.dir, prefix: keyPreview(prefix) });
    }
    let finished = false;
    try {
      for (;;) {
        // Checked before every step: never touch a cursor of a closed environment.
        if (this.closed) throw closedError('range');
        let step: IteratorResult<{ key: Buffer; value: Buffer }>;
        try {
          step = it.next();
        } catch (err) {
          throw toMetadataError(err, 'range', { dir: this.dir, prefix: keyPreview(prefix) });
        }
        if (step.done) {
          finished = true;
          return;
        }
        const { key, value } = step.value;
        if (!startsWithBytes(key, p)) return;
        yield [key.toString('utf8'), Buffer.from(value)];
      }
    } finally {
      // Ends lmdb's read snapshot early when the caller stops (break) or we passed the prefix.
      if (!finished && !this.closed) it.return?.();
    }
  }

  async commit(ops: ReadonlyArray<MetadataOp>): Promise<void> {
    this.assertOpen('commit');
    const prepared = prepareOps(ops); // all checks and value copies happen before lmdb sees anything
    if (prepared.length === 0) return;
    const keys = prepared.slice(0, 3).map((op) => keyPreview(op.key));
    await this.write('commit', { keys, count: prepared.length }, () => {
      for (const op of prepared) {
        try {
          if (op.value === null) this.db.removeSync(op.bytes);
          else this.db.putSync(op.bytes, op.value);
        } catch (err) {
          throw toMetadataError(err, 'commit', { dir: this.dir, key: keyPreview(op.key) });
        }
      }
    });
  }

  async deletePrefix(prefix: string): Promise<void> {
    this.assertOpen('deletePrefix');
    const p = encodePrefix(prefix);
    if (p.length > MAX_KEY_BYTES) return;
    await this.write('deletePrefix', { prefix: keyPreview(prefix) }, () => {
      // Inside the write transaction: sees every batch queued before this one. Collect, then delete.
      const doomed: Buffer[] = [];
      for (const key of this.db.getKeys(p.length > 0 ? { start: p } : {})) {
        if (!startsWithBytes(key, p)) break;
        doomed.push(Buffer.from(key));
      }
      for (const key of doomed) this.db.removeSync(key);
    });
  }

  /** Waits for in-flight writes, then closes the environment. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = (async () => {
        await Promise.allSettled([...this.inflight]);
        try {
          await this.db.close();
        } catch (err) {
          throw toMetadataError(err, 'close', { dir: this.dir });
        }
      })();
    }
    return this.closing;
  }

  private assertOpen(op: string): void {
    if (this.closed) throw closedError(op);
  }

  /** One atomic, durable write: a child transaction (aborted if `body` throws), then the flush. */
  private write(op: string, context: Record<string, unknown>, body: () => void): Promise<void> {
    const done = (async () => {
      try {
        await this.db.childTransaction(body);
        await this.db.flushed;
      } catch (err) {
        throw toMetadataError(err, op, { dir: this.dir, ...context });
      }
    })();
    this.inflight.add(done);
    const forget = () => void this.inflight.delete(done);
    done.then(forget, forget);
    return done;
  }
}
