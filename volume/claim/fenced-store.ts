/**
 * The self-fence on the backend: a BlobStore decorator that lets a backend write (put, createExclusive,
 * delete) through only while this router holds the vPool's claim (./claim.ts gate()), or, for a vDisk
 * delegated to this router, while the registry confirms it owns that vDisk (./vdisk-gate.ts). Every writer of the
 * vPool (the uploaders, the tree shipper, the snapshot documents, the removal of deleted vDisks) goes
 * through it. Reads pass untouched: they change nothing the new holder serves. A write refused because
 * the claim is lost is BackendError FENCED, which withRetry (../backend/retry.ts) does not retry.
 */
import type { BlobStore, ListOptions } from '../backend/types.js';

/** What decides whether a backend write may go: BackendClaim (the vPool's claim) or VDiskGate (one delegated vDisk). */
export interface WriteGate {
  gate(what: string): Promise<void>;
  /** Before an acknowledgement of the vDisk's I/O (VDiskGate only): null when nothing needs checking. */
  beforeAck?(what: string): Promise<void> | null;
}

export class FencedStore implements BlobStore {
  /** Present exactly when the wrapped store has it. */
  createExclusive?: (key: string, data: Uint8Array) => Promise<boolean>;
  /** Present exactly when the wrapped store has it (a read: passes untouched). */
  localPath?: (key: string) => string | null;
  /** Present exactly when the wrapped store has it; a write, gated like put. */
  putFile?: (key: string, file: string) => Promise<number>;

  /** The gate's check before an acknowledgement, when it has one (a delegated vDisk's VDiskGate). */
  beforeAck(what: string): Promise<void> | null {
    return this.claim.beforeAck?.(what) ?? null;
  }

  /** Whether the gate checks acknowledgements (a VDiskGate); the vPool's claim does not. */
  readonly checksAcks: boolean;

  constructor(private readonly inner: BlobStore, private readonly claim: WriteGate) {
    this.checksAcks = claim.beforeAck !== undefined;
    if (inner.localPath !== undefined) this.localPath = (key) => inner.localPath!(key);
    if (inner.putFile !== undefined) {
      this.putFile = async (key, file) => {
        await claim.gate(`put ${key}`);
        return inner.putFile!(key, file);
      };
    }
    if (inner.createExclusive !== undefined) {
      this.createExclusive = async (key, data) => {
        await claim.gate(`create ${key}`);
        return inner.createExclusive!(key, data);
      };
    }
  }

  get url(): string {
    return this.inner.url;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    await this.claim.gate(`put ${key}`);
    return this.inner.put(key, data);
  }

  async delete(key: string): Promise<void> {
    await this.claim.gate(`delete ${key}`);
    return this.inner.delete(key);
  }

  get(key: string): Promise<Buffer> {
    return this.inner.get(key);
  }

  getRange(key: string, offset: number, length: number): Promise<Buffer> {
    return this.inner.getRange(key, offset, length);
  }

  head(key: string): Promise<{ size: number } | null> {
    return this.inner.head(key);
  }

  list(prefix: string, opts?: ListOptions): Promise<string[]> {
    return this.inner.list(prefix, opts);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
