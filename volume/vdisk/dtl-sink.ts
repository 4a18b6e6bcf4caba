/**
 * What a vDisk tells its Distributed Transaction Log (DtlSink), and the sink of mode `none` (NO_DTL). The
 * provider of sinks and a vDisk's mode are in dtl-hook.ts; this file needs no vDisk, so vdisk.ts imports it
 * without a cycle.
 */
import type { DtlInfo, DtlMode } from '../types.js';

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
   * kernel, so a host loss here loses none of them). `async`: the queue has room. Never rejects; while
   * the DTL is unreachable it resolves at once (the vDisk is `degraded`).
   */
  settle(): Promise<void>;
  /** fsync: resolves once every entry recorded so far is on the DTL server's disk, or at once when degraded. Never rejects. */
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
