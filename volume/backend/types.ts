/**
 * The object backend seam. One small interface, one implementation per URL scheme
 * (`file://`, `mem://`, later `s3://`), picked by openBlobStore(url) in ./index.ts.
 *
 * Rules every implementation keeps:
 * - Keys are `/`-separated strings of [A-Za-z0-9._/-], no leading `/`, no `..` segment, at most 1024 bytes.
 * - Every method is idempotent: calling it again after a crash or a timeout is always safe.
 * - `put` is atomic: a reader sees either the whole old object (or none) or the whole new one, never a mix,
 *   and once the returned promise resolves the object survives a crash of this process and of the host.
 * - Errors are BackendError (util/errors.ts) with code NOT_FOUND for a missing object, INVALID for a bad
 *   key or range, BACKEND for everything else; `context` names the key.
 */
export interface ListOptions {
  /** Only keys greater than this (byte order); need not be a key itself. */
  startAfter?: string;
}

export interface BlobStore {
  /** The URL this store was opened with (credentials removed). */
  readonly url: string;
  /** Stores `data` under `key`, replacing any object there; durable and atomic once resolved. */
  put(key: string, data: Uint8Array): Promise<void>;
  /** The whole object. NOT_FOUND if missing. */
  get(key: string): Promise<Buffer>;
  /** `length` bytes from `offset`. INVALID if the range goes past the end; NOT_FOUND if missing. */
  getRange(key: string, offset: number, length: number): Promise<Buffer>;
  /** The object's size, or null when it does not exist. */
  head(key: string): Promise<{ size: number } | null>;
  /**
   * Every key starting with `prefix`, sorted ascending (byte order). Pages internally; returns all.
   * `opts.startAfter`: only the keys after that string (byte order), as S3's ListObjectsV2 `StartAfter` — so
   * that a caller that knows where the part it needs starts (a rebuild after its map checkpoint) does not
   * list a vDisk's whole history.
   */
  list(prefix: string, opts?: ListOptions): Promise<string[]>;
  /**
   * Optional: stores `data` under `key` only if no object is there, atomically against every other caller of
   * this method (true: created; false: something was there). Durable once resolved, like put. A store that
   * cannot do this atomically leaves it out; the claim (volume/claim/claim.ts) then writes, waits and reads back.
   */
  createExclusive?(key: string, data: Uint8Array): Promise<boolean>;
  /**
   * Optional: the path of a local file that holds exactly the object's stored bytes (a `file://` store,
   * unencrypted), or null (bad key). A reader may pread it in place instead of a ranged GET (the read
   * cache does, for a backend on the state disk's filesystem: read-cache.ts objectFd); it verifies what it
   * reads, as it does any GET's bytes. A store that transforms bytes (encryption) leaves it out.
   */
  localPath?(key: string): string | null;
  /**
   * Optional: stores the bytes of the local file `file` under `key`, with put's promises (atomic, durable
   * once resolved); resolves to the bytes stored. The file must not change meanwhile (the uploader's closed
   * SCOs do not). A `file://` store copies it in the kernel (copy_file_range), with no trip of the bytes
   * through this process; a store without it gets the bytes read and put.
   */
  putFile?(key: string, file: string): Promise<number>;
  /** Removes the object; resolves also when it was not there. */
  delete(key: string): Promise<void>;
  /** Releases connections and handles. Calls after close fail with CLOSED. */
  close(): Promise<void>;
}
