/**
 * What opening a vPool takes (openVPool in ./vpool.ts). Apart from ./types.ts because it names pieces of the
 * implementation (the DTL provider, the write cache's I/O, an opened backend or metadata store), which the
 * seams in types.ts must not import: they import types.ts.
 */
import type { MetadataStore } from '../mds/types.js';
import type { BlobStore } from './backend/types.js';
import type { CacheIo } from './datapath/write-cache/cache-io.js';
import type { DtlProvider } from './vdisk/dtl-hook.js';

export interface VPoolOptions {
  /** The vPool's name. */
  name: string;
  /** Local state: write cache, read cache, metadata store. Created if missing. */
  stateDir: string;
  /** Backend URL: file:///dir, mem://name, s3://… Default file://<stateDir>/backend. */
  backendUrl?: string;
  /** An already opened backend (tests wrap one to stall or fail it); wins over backendUrl. */
  backend?: BlobStore;
  /** The DTL (dtl-client/ via tools/), absent when the mount has no DTL server: every vDisk is `none`. */
  dtl?: DtlProvider;
  /** This storage router's identity. */
  routerId?: string;
  /** Clusters per SCO (default 1024 = 4 MiB). */
  scoClusters?: number;
  /** SCOs per TLog (default 16). */
  tlogScos?: number;
  /** Write-cache limit in bytes over the whole vPool (default 1 GiB). */
  writeCacheBytes?: number;
  /** Read-cache limit in bytes (default 256 MiB). */
  readCacheBytes?: number;
  /** `lmdb` (default) or `memory` (unit tests only: nothing survives a restart). */
  metadata?: 'lmdb' | 'memory';
  /** An already opened metadata store (tests wrap one to fail commits); wins over `metadata`. */
  metadataStore?: MetadataStore;
  /** The write cache's file I/O (tests put a fault-injecting one here); default node:fs. */
  cacheIo?: CacheIo;
  /**
   * Bytes always left free on the state disk (statfs of `<state>/wc`) for metadata commits: the write cache
   * never fills the disk past it. Default 5% of the filesystem, at least 16 MiB, at most 256 MiB.
   */
  stateReserveBytes?: number;
  /** The lease of the claim on the backend (ms, default 30 s; volume/claim/claim.ts): renewed every third of it. */
  claimLeaseMs?: number;
  /** Take the vPool even while another router's claim on the backend is live (it is fenced). */
  force?: boolean;
  /** Backends without an atomic create (S3): the wait before a new claim is read back (ms, default lease/10, at most 2 s). */
  claimSettleMs?: number;
  /**
   * Given the vPool's claim once it is taken: the registry (registry/router-session.ts) asks it to renew at once
   * when it finds another router owns the vPool now, so that this router learns it is fenced without waiting
   * for its next renewal.
   */
  onClaim?: (claim: { renew(): Promise<void>; fenceNow(why: string): void; readonly fenced: string | null }) => void;
  /**
   * Called before a write, discard, resize or fsync of any vDisk is acknowledged (VDiskContext.beforeAck): with a
   * registry, the session's check that this router still owns the vPool when its last confirmation is stale
   * (registry/router-session.ts ackCheck: a paused owner that resumed learns it lost the vPool before it
   * acknowledges a write the new owner will never see). null: nothing to wait for.
   */
  beforeAck?: (what: string) => Promise<void> | null;
  /** With a registry: this router's owner tag of the vPool, recorded in the backend claim (volume/claim/claim.ts). */
  ownerTag?: number;
  /**
   * Ownership per vDisk (docs/cluster.md): vDisks the registry records as delegated to another router (id → that
   * router). They are NOT opened at the start (another router may be writing them: opening one here rebuilds it
   * without an owner-tag fence and would number TLogs over the delegate's); they answer BUSY naming the router
   * until takeBackVDisk(). Size and allocated bytes show 0 until a getattr asks the delegate.
   */
  delegated?: ReadonlyMap<string, string>;
  /** A vDisk writes a map checkpoint to the backend every this many TLogs (default 128; 0: never). */
  checkpointEveryTlogs?: number;
  /** A rebuild from the backend starts from the newest fitting map checkpoint (default true). */
  loadCheckpoints?: boolean;
  /** How long a dirty SCO may stay open before it is closed and shipped (ms, default 5000). */
  scoMaxAgeMs?: number;
}
