/**
 * Where the registry keeps what, in etcd (one cluster may serve many vPools). docs/cluster.md has the table.
 *
 *   /vpoolfs/routers/<router>                  the live registration, attached to the router's lease: it
 *                                              vanishes when the lease expires (the router is dead or cut off)
 *   /vpoolfs/known-routers/<router>            the last registration, without a lease: `router list` shows a
 *                                              router whose lease is gone as expired; a clean stop deletes it
 *   /vpoolfs/owner-tag                         the cluster-wide owner tag counter (decimal), bumped in a
 *                                              transaction at every change of owner
 *   /vpoolfs/vpools/<vpool>/owner              the router that serves the vPool now and its owner tag
 *   /vpoolfs/vpools/<vpool>/vdisks/<id>        each vDisk's owner router and owner tag, its path, and whether its
 *                                              unshipped writes are protected (`dtl`: mode, state, dirty, since);
 *                                              `delegatedBy` when the vPool's owner handed it to another router
 *                                              (registry/vdisk-delegation.ts)
 *   /vpoolfs/vpools/<vpool>/takeover           `vpoolfs takeover --force`: take the vPool from that dead owner
 *                                              even though some of its vDisks may lose writes (registry/takeover.ts)
 *   /vpoolfs/vpools/<vpool>/move               a planned handover asked of the live owner (`vpoolfs move`, or the
 *                                              owner itself at the end of a live migration): registry/move.ts
 *   /vpoolfs/vpools/<vpool>/move-result        how the last move ended (the CLI waits for it)
 * Every value is JSON (but the owner tag): readJson reads one with its mod revision, setPhase a move's phase.
 */
import type { Etcd3 } from 'etcd3';

export const ROOT = '/vpoolfs/';
export const ROUTERS = `${ROOT}routers/`;
export const KNOWN_ROUTERS = `${ROOT}known-routers/`;
export const OWNER_TAG = `${ROOT}owner-tag`;
export const VPOOLS = `${ROOT}vpools/`;

export const routerKey = (name: string): string => `${ROUTERS}${name}`;
export const knownRouterKey = (name: string): string => `${KNOWN_ROUTERS}${name}`;
export const vpoolOwnerKey = (vpool: string): string => `${VPOOLS}${vpool}/owner`;
export const vdisksPrefix = (vpool: string): string => `${VPOOLS}${vpool}/vdisks/`;
export const vdiskKey = (vpool: string, id: string): string => `${vdisksPrefix(vpool)}${id}`;
export const takeoverKey = (vpool: string): string => `${VPOOLS}${vpool}/takeover`;
export const moveKey = (vpool: string): string => `${VPOOLS}${vpool}/move`;
export const moveResultKey = (vpool: string): string => `${VPOOLS}${vpool}/move-result`;

/** A router's registration (both router keys hold it). */
export interface RouterRecord {
  name: string;
  host: string;
  pid: number;
  /** The state directory: a restart of the same one on the same host may replace a registration not yet expired. */
  state: string;
  failureDomain: string | null;
  /** Its host's non-loopback interface addresses (registry/placement.ts: which DTL servers run on its machine). */
  ips?: string[];
  /** Where other routers reach this one: its router link (router-link/server.ts), HOST:PORT. */
  address: string | null;
  /** Where the vPool's owner reaches it about the vDisks it delegates to it (ownership per vDisk), HOST:PORT. */
  delegateAddress?: string;
  /** Its management API on TCP, if any. */
  api?: string | null;
  /** What it does for `vpool`: owns it, follows its owner (forwarding its mount's calls there), or stands by. */
  role?: RouterRole;
  vpool?: string;
  /** The DTL servers this router sends to, if any. */
  dtlServer: string[] | null;
  /** etcd lease id (decimal) and its TTL in seconds. */
  lease: string;
  leaseSeconds: number;
  registeredAt: string;
  /** A follower or standby that does not take the dead owner's vPool over by itself: what could be lost. */
  waiting?: Waiting | null;
}

/** Why a taker waits (registry/takeover.ts): the dead owner and its vDisks not recorded safe. */
export interface Waiting {
  vpool: string;
  owner: string;
  tag: number;
  since: string;
  risks: Risk[];
}

/** A vDisk of a dead owner whose unshipped writes may be lost by a takeover. */
export interface Risk {
  id: string;
  path: string | null;
  /** The owner's last record of its protection, or null: none recorded (an older router). */
  dtl: Protection | null;
  why: string;
}

/**
 * Whether a vDisk's writes not yet in the backend survive its owner's death, as its owner last recorded it:
 * safe when nothing is unshipped (`dirty` false) or the DTL is `sync` and `ok_sync`. `since`: when it last changed.
 */
export interface Protection {
  mode: 'none' | 'async' | 'sync';
  state: 'ok_sync' | 'ok_standalone' | 'catchup' | 'degraded';
  dirty: boolean;
  since: string;
}

export const isSafe = (p: Protection | null | undefined): boolean => p != null && (!p.dirty || (p.mode === 'sync' && p.state === 'ok_sync'));
export type RouterRole = 'owner' | 'follower' | 'standby';

/** The owner of a vPool or a vDisk. */
export interface OwnerRecord {
  router: string;
  /** From /vpoolfs/owner-tag: higher is newer; every change of owner takes a new one. */
  tag: number;
  since: string;
  /** vPool records: the owner's state directory (the same name from another one is another owner). */
  state?: string;
  /** vDisk records: the path in the vPool's tree when it was recorded. */
  path?: string;
  /** vDisk records: whether its unshipped writes are protected (recorded on changes, not per write). */
  dtl?: Protection;
  /** vPool records: the router this one got the vPool from by a planned move (registry/move.ts). */
  movedFrom?: string;
  /** vDisk records: the vPool's owner that delegated this vDisk to `router` (registry/vdisk-delegation.ts). */
  delegatedBy?: string;
  /**
   * vDisk records of a delegated vDisk: the delegate's registry lease when it was handed the vDisk. A registration
   * of that router under another lease is another process (restarted): the one serving the vDisk is gone.
   */
  lease?: string;
}

/** The JSON value at `key` and its mod revision (a transaction holds only while it is unchanged), or null. */
export async function readJson<T>(client: Etcd3, key: string): Promise<{ value: T; mod: string } | null> {
  const kv = (await client.get(key).exec()).kvs[0];
  return kv === undefined ? null : { value: JSON.parse(kv.value.toString()) as T, mod: kv.mod_revision };
}

/** Where the move asked at `key` stands (for the CLI): written only while the request there is still `id`. */
export async function setPhase(client: Etcd3, key: string, id: string, phase: string): Promise<void> {
  const cur = await readJson<{ id: string }>(client, key);
  if (cur === null || cur.value.id !== id) return;
  await client.if(key, 'Mod', '==', cur.mod).then(client.put(key).value(JSON.stringify({ ...cur.value, phase }))).commit();
}
