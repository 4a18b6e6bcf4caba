/**
 * EncryptedBlobStore: a BlobStore decorator that encrypts every object with AES-256-GCM before it reaches
 * the wrapped store (any backend), in chunks so that ranged reads stay ranged (format in ./crypto-format.ts,
 * design in docs/encryption.md). Sizes, ranges and lists are in plaintext terms, so it passes the same
 * conformance suite as the stores it wraps.
 *
 * Crash promises are the wrapped store's: one put is one put of the whole encrypted object, atomic there.
 *
 * Reads never return unauthenticated bytes. Failures are EncryptionError (a BackendError) with code
 * CHECKSUM and a `reason`: WRONG_KEY (written with another key; the key ids are in the context),
 * NOT_ENCRYPTED (a plain object where an encrypted one was expected), DAMAGED (a tag failed: the object
 * was changed or cut). getRange reads the 64-byte header once per object (then cached; a cached header
 * that no longer matches an overwritten object is refetched once) and only the chunks the range covers.
 *
 * Key rotation (docs/encryption.md): besides its key, the store may hold old keys, for reading only. Each
 * object's header names the key that wrote it, so a read picks the right one; every put uses the current key.
 * rewrite(key) re-encrypts one object under the current key (the rekey job, volume/policy/rekey-job.ts). It
 * runs under a per-key lock that put, createExclusive and delete of the same key also take, so a rewrite
 * can never put back an older content over a newer put, nor bring back a deleted object.
 */
import { BackendError } from '../../util/errors.js';
import type { BlobStore, ListOptions } from './types.js';
import { checkRangeWithin, validateKey, validateRangeArgs } from './keys.js';
import { KeyedSerial } from '../../util/serial.js';
import {
  DEFAULT_CHUNK, HEADER_SIZE, chunkCount, chunkOffset, decryptChunks, encryptObject, keyIdOf, objectKey, parseHeader,
  storedSize, verifyHeader, type Header,
} from './crypto-format.js';

export type EncryptionProblem = 'WRONG_KEY' | 'MISSING_KEY' | 'NOT_ENCRYPTED' | 'DAMAGED' | 'BAD_KEY';

/** A key or format problem. Per object: code CHECKSUM (never data). At open/mount: code INVALID. */
export class EncryptionError extends BackendError {
  constructor(readonly reason: EncryptionProblem, code: 'CHECKSUM' | 'INVALID', message: string, context: Record<string, unknown> = {}) {
    super(code, message, { ...context, reason });
  }
}

const HEADER_CACHE = 4096;

interface Opened {
  header: Header;
  okey: Buffer;
}

/** What rewrite() did to one object. */
export type RewriteOutcome = 'current' | 'rewritten' | 'gone';

export class EncryptedBlobStore implements BlobStore {
  readonly keyId: Buffer;
  private readonly master: Buffer;
  /** Every key this store can read with, by key id (hex): the current one and the old ones. */
  private readonly masters = new Map<string, Buffer>();
  private readonly headers = new Map<string, Opened>();
  /** Per-key lock of the writes (put, createExclusive, delete, rewrite): the tail of each key's queue. */
  private readonly writing = new KeyedSerial();

  /**
   * `key` is the 32-byte master key; `chunk` the plaintext chunk size of new objects; `oldKeys` keys that
   * objects may still be encrypted with (a key rotation not yet finished): read, never written with.
   */
  constructor(readonly inner: BlobStore, key: Uint8Array, private readonly chunk = DEFAULT_CHUNK, oldKeys: readonly Uint8Array[] = []) {
    if (key.length !== 32) throw new EncryptionError('BAD_KEY', 'INVALID', `an AES-256 key is 32 bytes, got ${key.length}`);
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > 2 ** 30) throw new BackendError('INVALID', `bad chunk size ${chunk}`);
    this.master = Buffer.from(key);
    this.keyId = keyIdOf(this.master);
    for (const old of oldKeys) {
      if (old.length !== 32) throw new EncryptionError('BAD_KEY', 'INVALID', `an AES-256 key is 32 bytes, got ${old.length} (an old key)`);
      this.masters.set(keyIdOf(Buffer.from(old)).toString('hex'), Buffer.from(old));
    }
    this.masters.set(this.keyId.toString('hex'), this.master);
    if (inner.createExclusive !== undefined) {
      this.createExclusive = async (k, data) => {
        validateKey(k);
        return this.locked(k, () => {
          this.headers.delete(k);
          return inner.createExclusive!(k, encryptObject(this.master, this.keyId, k, data, this.chunk));
        });
      };
    }
  }

  /** Key ids (hex) the backend's marker says objects may still be under (an unfinished rotation; open-backend.ts). */
  retiring: string[] = [];

  /** The key ids of the old keys this store holds (hex). */
  get oldKeyIds(): string[] {
    const me = this.keyId.toString('hex');
    return [...this.masters.keys()].filter((k) => k !== me);
  }

  /** Runs `fn` once every earlier write of `key` in this store has ended (success or not). */
  private locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.writing.run(key, fn);
  }

  /**
   * The key id (hex) the object `key` is encrypted with, from its header alone (not authenticated: for
   * counting and checking, never for trusting data); null when it does not exist. NOT_ENCRYPTED or DAMAGED
   * (EncryptionError) when the header is not ours.
   */
  async objectKeyId(key: string): Promise<string | null> {
    validateKey(key);
    const raw = await this.rawHeader(key);
    if (raw === null) return null;
    const header = parseHeader(raw);
    if (header === 'NOT_ENCRYPTED') throw new EncryptionError('NOT_ENCRYPTED', 'CHECKSUM', `object ${key} in ${this.url} is not encrypted`, { key, url: this.url });
    if (header === 'DAMAGED') throw this.damaged(key, 'its encryption header is malformed');
    return header.keyId.toString('hex');
  }

  /**
   * Re-encrypts `key` under the current key when an old one wrote it: read and authenticated whole with the
   * old key, put with the current one (atomic like any put: a reader sees the old object or the new one,
   * and reads either). Under the key's write lock; `beforePut` runs right before the put (the claim's gate:
   * a router that lost the vPool must not write). 'current': nothing to do; 'gone': it no longer exists.
   */
  rewrite(key: string, beforePut?: () => Promise<void>): Promise<{ outcome: RewriteOutcome; bytes: number }> {
    validateKey(key);
    return this.locked(key, async () => {
      const raw = await this.rawHeader(key);
      if (raw === null) return { outcome: 'gone', bytes: 0 };
      const header = parseHeader(raw);
      if (header !== 'NOT_ENCRYPTED' && header !== 'DAMAGED' && header.keyId.equals(this.keyId)) return { outcome: 'current', bytes: 0 };
      let plain: Buffer;
      try {
        plain = await this.get(key);
      } catch (err) {
        if (err instanceof BackendError && err.code === 'NOT_FOUND') return { outcome: 'gone', bytes: 0 };
        throw err;
      }
      await beforePut?.();
      this.headers.delete(key);
      await this.inner.put(key, encryptObject(this.master, this.keyId, key, plain, this.chunk));
      return { outcome: 'rewritten', bytes: plain.length };
    });
  }

  /** The first HEADER_SIZE bytes of the stored object (fewer when it is shorter); null when missing. */
  private async rawHeader(key: string): Promise<Buffer | null> {
    try {
      return await this.inner.getRange(key, 0, HEADER_SIZE);
    } catch (err) {
      if (err instanceof BackendError && err.code === 'NOT_FOUND') return null;
      if (!(err instanceof BackendError && err.code === 'INVALID')) throw err;
    }
    try {
      return await this.inner.get(key);
    } catch (err) {
      if (err instanceof BackendError && err.code === 'NOT_FOUND') return null;
      throw err;
    }
  }

  get url(): string {
    return this.inner.url;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    validateKey(key);
    if (!(data instanceof Uint8Array)) throw new BackendError('INVALID', `put ${key}: data is not a Uint8Array`, { key });
    await this.locked(key, () => {
      this.headers.delete(key);
      return this.inner.put(key, encryptObject(this.master, this.keyId, key, data, this.chunk));
    });
  }

  /** Present exactly when the wrapped store has it (set in the constructor). */
  createExclusive?: (key: string, data: Uint8Array) => Promise<boolean>;

  async get(key: string): Promise<Buffer> {
    validateKey(key);
    const stored = await this.inner.get(key);
    const { header, okey } = this.open(key, stored.subarray(0, HEADER_SIZE));
    const plain = stored.length === storedSize(header.length, header.chunk)
      ? decryptChunks(header, okey, 0, chunkCount(header.length, header.chunk), stored.subarray(HEADER_SIZE))
      : null;
    if (plain === null) throw this.damaged(key, 'a chunk failed its authentication tag or the object has the wrong size');
    return plain;
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    validateKey(key);
    validateRangeArgs(key, offset, length);
    const cached = this.headers.get(key);
    try {
      return await this.readRange(key, offset, length, cached ?? (await this.fetchHeader(key)));
    } catch (err) {
      // the object may have been replaced (another writer, or a rewrite under a new key) since its header was
      // read, cached or just now: tags that fail, or a range past the header's length, may be right for the
      // new object: read the header again, once (a really damaged object fails the same way again)
      const stale = (err instanceof EncryptionError && err.reason === 'DAMAGED') || (err instanceof BackendError && err.code === 'INVALID');
      if (!stale) throw err;
      this.headers.delete(key);
      return this.readRange(key, offset, length, await this.fetchHeader(key));
    }
  }

  async head(key: string): Promise<{ size: number } | null> {
    validateKey(key);
    const h = await this.inner.head(key);
    if (h === null) return null;
    let opened: Opened;
    try {
      opened = await this.fetchHeader(key);
    } catch (err) {
      if (err instanceof BackendError && err.code === 'NOT_FOUND') return null;
      throw err;
    }
    if (h.size !== storedSize(opened.header.length, opened.header.chunk)) {
      this.headers.delete(key);
      throw this.damaged(key, `the object is ${h.size} bytes, its header says ${storedSize(opened.header.length, opened.header.chunk)}`);
    }
    return { size: opened.header.length };
  }

  list(prefix: string, opts?: ListOptions): Promise<string[]> {
    return this.inner.list(prefix, opts); // keys are not transformed: the same order, the same startAfter
  }

  async delete(key: string): Promise<void> {
    await this.locked(key, () => {
      this.headers.delete(key);
      return this.inner.delete(key);
    });
  }

  close(): Promise<void> {
    this.headers.clear();
    return this.inner.close();
  }

  private async readRange(key: string, offset: number, length: number, o: Opened): Promise<Buffer> {
    const { header, okey } = o;
    checkRangeWithin(key, offset, length, header.length);
    if (length === 0) return Buffer.alloc(0);
    const first = Math.floor(offset / header.chunk);
    const last = Math.floor((offset + length - 1) / header.chunk);
    const from = chunkOffset(first, header.chunk);
    const to = Math.min(chunkOffset(last + 1, header.chunk), storedSize(header.length, header.chunk));
    let stored: Buffer;
    try {
      stored = await this.inner.getRange(key, from, to - from);
    } catch (err) {
      if (err instanceof BackendError && err.code === 'INVALID') throw this.damaged(key, 'the object is shorter than its header says');
      throw err;
    }
    const plain = decryptChunks(header, okey, first, last - first + 1, stored);
    if (plain === null) throw this.damaged(key, `chunks ${first}..${last} failed their authentication tags`);
    const start = offset - first * header.chunk;
    return plain.subarray(start, start + length);
  }

  /** Reads, checks and caches the header of `key`. NOT_FOUND when missing. */
  private async fetchHeader(key: string): Promise<Opened> {
    let raw: Buffer;
    try {
      raw = await this.inner.getRange(key, 0, HEADER_SIZE);
    } catch (err) {
      if (!(err instanceof BackendError && err.code === 'INVALID')) throw err;
      raw = await this.inner.get(key); // shorter than a header: open() tells a plain object from a cut one
    }
    const opened = this.open(key, raw);
    if (this.headers.size >= HEADER_CACHE) this.headers.delete(this.headers.keys().next().value!);
    this.headers.set(key, opened);
    return opened;
  }

  /** Parses and authenticates a header with this store's key. */
  private open(key: string, raw: Buffer): Opened {
    const header = parseHeader(raw);
    if (header === 'NOT_ENCRYPTED') {
      throw new EncryptionError('NOT_ENCRYPTED', 'CHECKSUM', `object ${key} in ${this.url} is not encrypted, but this vPool encrypts its backend`, { key, url: this.url });
    }
    if (header === 'DAMAGED') throw this.damaged(key, 'its encryption header is malformed');
    const master = this.masters.get(header.keyId.toString('hex'));
    if (master === undefined) {
      const ids = [...this.masters.keys()].join(', ');
      throw new EncryptionError('WRONG_KEY', 'CHECKSUM',
        `object ${key} in ${this.url} was encrypted with key id ${header.keyId.toString('hex')}, but the key${this.masters.size > 1 ? 's' : ''} given ha${this.masters.size > 1 ? 've ids' : 's id'} ${ids}: wrong encryption key`,
        { key, url: this.url, objectKeyId: header.keyId.toString('hex'), keyId: this.keyId.toString('hex') });
    }
    const okey = objectKey(master, header.salt, key);
    if (!verifyHeader(header, okey)) throw this.damaged(key, 'its encryption header failed its authentication tag');
    return { header: { ...header, raw: Buffer.from(header.raw), keyId: Buffer.from(header.keyId), salt: Buffer.from(header.salt) }, okey };
  }

  private damaged(key: string, why: string): EncryptionError {
    return new EncryptionError('DAMAGED', 'CHECKSUM', `encrypted object ${key} in ${this.url} is damaged: ${why}`, { key, url: this.url });
  }
}
