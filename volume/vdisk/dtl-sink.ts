/**
 * What a vDisk tells its Distributed Transaction Log (DtlSink), and the sink of mode `none` (NO_DTL); the
 * provider of sinks (DtlProvider, implemented in dtl-client/) and what it sees of a vDisk (DtlVDisk, which
 * VDiskImpl implements). A vDisk's mode is in dtl-hook.ts. This file imports no vDisk, so vdisk.ts and
 * vdisk-context.ts import it without a cycle.
 */
import type { BlobStore } from '../backend/types.js';
import type { ClusterMap } from '../datapath/formats/cluster-map.js';
import type { LocalCache } from '../datapath/write-cache/local-cache.js';
import type { DocStore } from '../lineage/snapshot-store.js';
import type { DtlInfo, DtlMode } from '../types.js';

/** What the DTL (dtl-client/: bridge, catch-up history, recovery) reads and asks of a vDisk (VDiskImpl, vdisk.ts). */
export interface DtlVDisk {
  readonly id: string;
  readonly tag: number;
  readonly size: number;
  readonly corkedTlog: number;
  readonly corkedSco: number;
  readonly map: ClusterMap;
  readonly cache: LocalCache;
  readonly docs: DocStore;
  readonly ctx: { readonly backend: BlobStore };
  /** Runs `fn` with no other write, resize or sync of this vDisk in between. */
  exclusive<T>(fn: () => Promise<T> | T): Promise<T>;
  /** Recovery: applies one DTL entry as the write, resize or discard that made it (VDiskImpl.applyDtlEntry). */
  applyDtlEntry(e: DtlEntry, keep?: (address: number) => boolean): Promise<void>;
  sync(): Promise<void>;
  syncToBackend(): Promise<void>;
  /**
   * Who this router is to a DTL server's fence (dtl-client/fence.ts): its name, the registry owner tag it serves
   * the vDisk under (0: no registry), the vPool's claim epoch it holds (0: none, a delegate). Read at each use.
   */
  dtlOwner(): DtlOwner;
  /**
   * A DTL server refused this router's changes of the vDisk: a newer owner registered or recovered it there.
   * The vDisk answers its I/O with FENCED (EIO) from now on; logged once.
   */
  fenceByDtl(why: string): void;
}

export interface DtlOwner {
  router: string;
  tag: number;
  claim: number;
}

/** One DTL entry as a recovery applies it. */
export type DtlEntry = { kind: 'cluster'; address: number; data: Uint8Array } | { kind: 'resize'; size: number }
  | { kind: 'discard'; first: number; count: number };

export interface DtlProvider {
  /** The mode of a vDisk that has none recorded (mount `--dtl`). */
  readonly defaultMode: DtlMode;
  /** A sink in `mode` (async or sync) for `v`; it attaches in the background (catch-up) and never fails `v`'s I/O. */
  sink(v: DtlVDisk, mode: DtlMode): DtlSink;
  /**
   * After a rebuild from the backend (the local state is gone): replays the DTL entries newer than the
   * last SCO in the backend into `v` and ships them to the backend. Logs and goes on if no server answers.
   */
  recover(v: DtlVDisk): Promise<void>;
  /**
   * After a local restart of a vDisk in async or sync mode: replays the DTL entries with tag >= `fromSco`
   * (the first SCO the restart did not find whole on the disk: a power cut) into `v` and syncs it locally.
   */
  recoverLocal?(v: DtlVDisk, fromSco: number): Promise<void>;
}

export interface DtlSink {
  readonly mode: DtlMode;
  /**
   * Clusters just appended to the write cache: `addresses[i]` now holds `datas[i]` in SCO `scos[i]`.
   * Called under the vDisk's lock; copies what it keeps (the caller's buffers may be reused); never throws.
   */
  clusters(addresses: number[], scos: number[], datas: Uint8Array[]): void;
  /** The size changed: a resize record went to TLog `tlog`; `tag` is the SCO open, or next, at that moment. */
  resize(size: number, tag: number, tlog: number): void;
  /**
   * Clusters first..first+count-1 were discarded (read as zeros): a DISCARD record went to TLog `tlog`;
   * `tag` is the SCO open, or next, at that moment. Ordered with clusters() and resize() as they happened.
   */
  discard(first: number, count: number, tag: number, tlog: number): void;
  /**
   * Resolves when the writes recorded so far may be acknowledged. `sync`: the DTL server has them (in its
   * kernel, so a host loss here loses none of them). `async`: the queue has room. While the DTL is
   * unreachable it resolves at once (the vDisk is `degraded`). Rejects only with FENCED: the DTL server
   * refused this router, a newer owner registered or recovered the vDisk there (never acknowledge then).
   */
  settle(): Promise<void>;
  /** fsync: resolves once every entry recorded so far is on the DTL server's disk, or at once when degraded. Rejects only with FENCED (as settle). */
  flush(): Promise<void>;
  /**
   * The SCOs up to `sco` are in the backend (a cork). `idle`: nothing else is waiting locally, so every
   * entry recorded so far is in the backend too: the DTL drops them all, and the promise resolves once it
   * has (so that what follows — a rollback — cannot be undone by a replay of older entries); otherwise,
   * or when degraded, at once. Never rejects.
   */
  trim(sco: number, idle: boolean): Promise<void>;
  info(): DtlInfo;
  /** Bytes of entries recorded but not yet on the DTL server (its lag; absent for mode none). */
  readonly queuedBytes?: number;
  /** Stops; `forget` also drops the vDisk's entries on the server (the mode went to none, the vDisk was removed). */
  close(forget: boolean): void;
  /**
   * A clean close: everything of the vDisk is in the backend. Waits for a catch-up in progress, empties the
   * server's copy (Clear + Flush) and stops, so that no later recovery elsewhere can replay entries of this
   * incarnation. Bounded by `ms`: a server that does not answer keeps its copy (logged).
   */
  retire(ms: number): Promise<void>;
}

const STANDALONE: DtlInfo = Object.freeze({ mode: 'none', state: 'ok_standalone', server: null }) as DtlInfo;

/** Mode none: no DTL. */
export const NO_DTL: DtlSink = {
  mode: 'none',
  clusters: () => undefined,
  resize: () => undefined,
  discard: () => undefined,
  settle: () => Promise.resolve(),
  flush: () => Promise.resolve(),
  trim: () => Promise.resolve(),
  info: () => ({ ...STANDALONE }),
  close: () => undefined,
  retire: () => Promise.resolve(),
};
