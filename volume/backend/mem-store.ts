/**
 * MemBlobStore: the `mem://name` backend, an in-process Map of Buffers for tests and benchmarks.
 *
 * Stores opened with the same name in one process share their contents (a module-level registry), so a
 * test can close a store and "restart" against the same backend; resetMemStores() empties the registry
 * (stores already open keep the contents they had). Data is copied on put and on get, so callers can
 * never alias stored bytes. Validation and error codes are the same as every other backend (./keys.ts).
 */
import { BackendError } from '../../util/errors.js';
import type { BlobStore, ListOptions } from './types.js';
import { checkRangeWithin, compareKeys, validateKey, validatePrefix, validateRangeArgs } from './keys.js';

const registry = new Map<string, Map<string, Buffer>>();

/** Forgets every mem:// backend; stores opened afterwards start empty. For tests. */
export function resetMemStores(): void {
  registry.clear();
}

export class MemBlobStore implements BlobStore {
  readonly url: string;
  private readonly objects: Map<string, Buffer>;
  private closed = false;

  /** `url` is `mem://name`; the name (everything after `mem://`) must be non-empty. */
  constructor(url: string) {
    if (url.slice(0, 6).toLowerCase() !== 'mem://') throw new BackendError('INVALID', `not a mem:// URL`, { url });
    const name = url.slice('mem://'.length);
    if (name === '') throw new BackendError('INVALID', 'mem:// URL needs a name, e.g. mem://test', { url });
    this.url = url;
    let objects = registry.get(name);
    if (objects === undefined) {
      objects = new Map();
      registry.set(name, objects);
    }
    this.objects = objects;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    this.check();
    validateKey(key);
    if (!(data instanceof Uint8Array)) throw new BackendError('INVALID', `put ${key}: data is not a Uint8Array`, { key });
    this.objects.set(key, Buffer.from(data));
  }

  async createExclusive(key: string, data: Uint8Array): Promise<boolean> {
    this.check();
    validateKey(key);
    if (this.objects.has(key)) return false;
    this.objects.set(key, Buffer.from(data));
    return true;
  }

  async get(key: string): Promise<Buffer> {
    this.check();
    validateKey(key);
    return Buffer.from(this.find(key));
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    this.check();
    validateKey(key);
    validateRangeArgs(key, offset, length);
    const data = this.find(key);
    checkRangeWithin(key, offset, length, data.length);
    return Buffer.from(data.subarray(offset, offset + length));
  }

  async head(key: string): Promise<{ size: number } | null> {
    this.check();
    validateKey(key);
    const data = this.objects.get(key);
    return data === undefined ? null : { size: data.length };
  }

  async list(prefix: string, opts?: ListOptions): Promise<string[]> {
    this.check();
    validatePrefix(prefix);
    const after = opts?.startAfter;
    return [...this.objects.keys()].filter((k) => k.startsWith(prefix) && (after === undefined || k > after)).sort(compareKeys);
  }

  async delete(key: string): Promise<void> {
    this.check();
    validateKey(key);
    this.objects.delete(key);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private find(key: string): Buffer {
    const data = this.objects.get(key);
    if (data === undefined) throw new BackendError('NOT_FOUND', `no object ${key} in ${this.url}`, { key, url: this.url });
    return data;
  }

  private check(): void {
    if (this.closed) throw new BackendError('CLOSED', `blob store ${this.url} is closed`, { url: this.url });
  }
}
