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
 *   /vpoolfs/vpools/<vpool>/vdisks/<id>        each vDisk's owner router and owner tag, and its path
 */
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

/** A router's registration (both router keys hold it). */
export interface RouterRecord {
  name: string;
  host: string;
  pid: number;
  /** The state directory: a restart of the same one on the same host may replace a registration not yet expired. */
  state: string;
  failureDomain: string | null;
  /** Where other routers reach this one: its router link (router-link/server.ts), HOST:PORT. */
  address: string | null;
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
}

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
}
