/**
 * MemoryMetadataStore: the in-memory MetadataStore for unit tests, with the same semantics as the lmdb one
 * (./lmdb-store.ts): UTF-8 byte-ordered string keys of 1..1978 bytes, byte values copied in and out,
 * atomic batches applied in call order, and nothing of a batch visible before its promise settles.
 *
 * It also holds the key/value checks both stores share (encodeKey, encodePrefix, copyValue), so that
 * a test against memory rejects exactly what lmdb would reject.
 */
import { MetadataError } from '../util/errors.js';
import { Serial } from '../util/serial.js';
import type { MetadataOp, MetadataStore } from './types.js';

/** lmdb's key limit with its default 4 KiB pages, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1978;

/** A lone (unpaired) UTF-16 surrogate: it has no UTF-8 form, so the key would not round-trip. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A short form of a key for error context (keys can be ~2 KB). */
export function keyPreview(key: string): string {
  return key.length > 120 ? `${key.slice(0, 120)}…(${key.length} chars)` : key;
}

function checkText(text: unknown, what: 'key' | 'prefix'): string {
  if (typeof text !== 'string') {
    throw new MetadataError('INVALID', `metadata ${what} must be a string, got ${typeof text}`, { [what]: text });
  }
  if (LONE_SURROGATE.test(text)) {
    throw new MetadataError('INVALID', `metadata ${what} contains an unpaired UTF-16 surrogate`, {
      [what]: keyPreview(text),
    });
  }
  return text;
}

/** The UTF-8 bytes of a key; INVALID when empty, not well-formed or over MAX_KEY_BYTES. */
export function encodeKey(key: string): Buffer {
  checkText(key, 'key');
  if (key.length === 0) throw new MetadataError('INVALID', 'metadata key must not be empty', { key });
  const bytes = Buffer.from(key, 'utf8');
  if (bytes.length > MAX_KEY_BYTES) {
    throw new MetadataError('INVALID', `metadata key is ${bytes.length} bytes, over the ${MAX_KEY_BYTES}-byte limit`, {
      key: keyPreview(key),
      bytes: bytes.length,
    });
  }
  return bytes;
}

/** The UTF-8 bytes of a range/deletePrefix prefix; may be empty (everything) or longer than any key. */
export function encodePrefix(prefix: string): Buffer {
  return Buffer.from(checkText(prefix, 'prefix'), 'utf8');
}

/** A private copy of an op's value (null for a delete); INVALID unless it is bytes. */
export function copyValue(op: MetadataOp): Buffer | null {
  if (op.value === null) return null;
  if (!(op.value instanceof Uint8Array)) {
    throw new MetadataError('INVALID', 'metadata value must be a Uint8Array or null', {
      key: keyPreview(op.key),
      type: typeof op.value,
    });
  }
  return Buffer.from(op.value); // copies: the caller may reuse its buffer at once
}

export function startsWithBytes(key: Uint8Array, prefix: Uint8Array): boolean {
  return key.length >= prefix.length && Buffer.compare(key.subarray(0, prefix.length), prefix) === 0;
}

export interface PreparedOp {
  key: string;
  bytes: Buffer;
  value: Buffer | null;
}

/** Checks and copies a whole batch before anything is applied, so a bad op rejects the batch untouched. */
export function prepareOps(ops: ReadonlyArray<MetadataOp>): PreparedOp[] {
  if (!Array.isArray(ops)) throw new MetadataError('INVALID', 'metadata commit needs an array of ops', {});
  return ops.map((op) => {
    if (op === null || typeof op !== 'object') throw new MetadataError('INVALID', 'metadata op must be an object', {});
    return { key: op.key, bytes: encodeKey(op.key), value: copyValue(op) };
  });
}

export function closedError(op: string): MetadataError {
  return new MetadataError('CLOSED', `metadata store is closed (${op})`, { op });
}

interface Entry {
  bytes: Buffer;
  value: Buffer;
}

export class MemoryMetadataStore implements MetadataStore {
  private readonly entries = new Map<string, Entry>();
  /** Keys in UTF-8 byte order; rebuilt lazily after a key is added or removed. */
  private sorted: Entry[] | null = [];
  /** Writes apply one after another, each after the previous one, never synchronously in the call. */
  private readonly tail = new Serial();
  private closed = false;
  private closing: Promise<void> | null = null;

  get(key: string): Buffer | undefined {
    if (this.closed) throw closedError('get');
    encodeKey(key);
    const entry = this.entries.get(key);
    return entry === undefined ? undefined : Buffer.from(entry.value);
  }

  range(prefix: string): Iterable<[string, Buffer]> {
    if (this.closed) throw closedError('range');
    const p = encodePrefix(prefix);
    // Snapshot the matching entries now (like lmdb's read snapshot): later commits do not disturb the walk.
    const all = this.sortedEntries();
    const snapshot: Entry[] = [];
    for (let i = lowerBound(all, p); i < all.length && startsWithBytes(all[i].bytes, p); i++) {
      snapshot.push({ bytes: all[i].bytes, value: all[i].value }); // a put replaces entry.value, never mutates it
    }
    return this.walk(snapshot);
  }

  private *walk(snapshot: Entry[]): Generator<[string, Buffer]> {
    for (const entry of snapshot) {
      if (this.closed) throw closedError('range');
      yield [entry.bytes.toString('utf8'), Buffer.from(entry.value)];
    }
  }

  async commit(ops: ReadonlyArray<MetadataOp>): Promise<void> {
    if (this.closed) throw closedError('commit');
    const prepared = prepareOps(ops);
    await this.enqueue(() => {
      for (const op of prepared) {
        if (op.value === null) this.remove(op.key);
        else this.put(op.key, op.bytes, op.value);
      }
    });
  }

  async deletePrefix(prefix: string): Promise<void> {
    if (this.closed) throw closedError('deletePrefix');
    const p = encodePrefix(prefix);
    await this.enqueue(() => {
      for (const [key, entry] of [...this.entries]) if (startsWithBytes(entry.bytes, p)) this.remove(key);
    });
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = this.tail.idle(); // in-flight writes finish first
    }
    return this.closing;
  }

  private enqueue(apply: () => void): Promise<void> {
    return this.tail.run(apply);
  }

  private put(key: string, bytes: Buffer, value: Buffer): void {
    const old = this.entries.get(key);
    if (old) {
      old.value = value; // the sorted array holds the same Entry object
    } else {
      this.entries.set(key, { bytes, value });
      this.sorted = null;
    }
  }

  private remove(key: string): void {
    if (this.entries.delete(key)) this.sorted = null;
  }

  private sortedEntries(): Entry[] {
    if (!this.sorted) this.sorted = [...this.entries.values()].sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    return this.sorted;
  }
}

/** The first index whose key is >= `p` in byte order. */
function lowerBound(all: Entry[], p: Buffer): number {
  let lo = 0;
  let hi = all.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (Buffer.compare(all[mid].bytes, p) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
