/**
 * A BlobStore wrapper for back-pressure and outage tests: its puts can be held at a gate (they wait on a
 * promise until the gate opens) and the whole store can be made to fail with BackendError 'BACKEND' for a
 * while. Everything else is passed through to the wrapped store (a file:// or mem:// one).
 */
import type { ExecutionContext } from 'ava';
import type { BlobStore, ListOptions } from '../../volume/backend/types.js';
import { BackendError } from '../../util/errors.js';

export class GatedStore implements BlobStore {
  /** Puts waiting at the closed gate right now. */
  waiting = 0;
  /** Calls failed on purpose so far. */
  failed = 0;
  /** Puts that reached the wrapped store. */
  puts = 0;
  private gate: Promise<void> | null = null;
  private openGate: () => void = () => {};
  private failing = false;
  private failReads = false;

  /**
   * The wrapped store's exclusive create, not held at the gate (the vPool takes its claim with it at open:
   * volume/claim/claim.ts); it fails while the store is failing.
   */
  createExclusive?: (key: string, data: Uint8Array) => Promise<boolean>;

  constructor(private readonly inner: BlobStore) {
    if (inner.createExclusive !== undefined) {
      this.createExclusive = async (key, data) => {
        if (this.failing) this.fail('createExclusive', key);
        return inner.createExclusive!(key, data);
      };
    }
  }

  get url(): string {
    return this.inner.url;
  }

  /** Holds every put from now on until resume(). */
  pause(): void {
    if (this.gate !== null) return;
    this.gate = new Promise<void>((r) => { this.openGate = r; });
  }

  /** Lets the held puts (and all later ones) through. */
  resume(): void {
    const open = this.openGate;
    this.gate = null;
    open();
  }

  /** Makes puts (and, with `reads`, gets, heads and lists) fail with BACKEND until failing(false). */
  setFailing(on: boolean, reads = false): void {
    this.failing = on;
    this.failReads = on && reads;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    while (this.gate !== null) {
      this.waiting++;
      try {
        await this.gate;
      } finally {
        this.waiting--;
      }
    }
    if (this.failing) this.fail('put', key);
    this.puts++;
    return this.inner.put(key, data);
  }

  async get(key: string): Promise<Buffer> {
    if (this.failReads) this.fail('get', key);
    return this.inner.get(key);
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    if (this.failReads) this.fail('getRange', key);
    return this.inner.getRange(key, offset, length);
  }

  async head(key: string): Promise<{ size: number } | null> {
    if (this.failReads) this.fail('head', key);
    return this.inner.head(key);
  }

  async list(prefix: string, opts?: ListOptions): Promise<string[]> {
    if (this.failReads) this.fail('list', prefix);
    return this.inner.list(prefix, opts);
  }

  async delete(key: string): Promise<void> {
    if (this.failing) this.fail('delete', key);
    return this.inner.delete(key);
  }

  close(): Promise<void> {
    this.resume();
    return this.inner.close();
  }

  private fail(op: string, key: string): never {
    this.failed++;
    throw new BackendError('BACKEND', `${op} ${key}: the backend is down (test)`, { key, op });
  }
}

/**
 * A GatedStore around `inner` that is opened and healed when the test ends, so that a test failing while
 * the gate is closed or the backend failing does not leave the vPool's close() waiting forever.
 */
export function gatedStore(t: ExecutionContext, inner: BlobStore): GatedStore {
  const g = new GatedStore(inner);
  t.teardown(() => {
    g.setFailing(false);
    g.resume();
  });
  return g;
}
