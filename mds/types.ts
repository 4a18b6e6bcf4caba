/**
 * The metadata store seam: a small, ordered, crash-safe key/value store holding the persisted cluster maps
 * ("corked" pages), the vPool tree and the SCO/TLog bookkeeping of each vDisk.
 * Implementations: lmdb (./lmdb-store.ts, the real one) and in-memory (./memory-store.ts, for unit tests).
 *
 * Crash promise: a `commit` is atomic and, once its promise resolves, durable across a kill of the process
 * and a crash of the host. Reads see every committed batch (and nothing of a batch still in flight).
 * Keys are strings; values are bytes. Iteration is in ascending key order (byte order of UTF-8).
 */
export interface MetadataStore {
  get(key: string): Buffer | undefined;
  /** Every [key, value] whose key starts with `prefix`, ascending. */
  range(prefix: string): Iterable<[string, Buffer]>;
  /** Applies all operations atomically: a value of `null` deletes the key. */
  commit(ops: ReadonlyArray<MetadataOp>): Promise<void>;
  /** Deletes every key starting with `prefix`, atomically. */
  deletePrefix(prefix: string): Promise<void>;
  close(): Promise<void>;
}

export interface MetadataOp {
  key: string;
  value: Uint8Array | null;
}
