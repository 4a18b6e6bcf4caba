/**
 * `vpoolfs router list`: every router the registry knows, its state and the vDisks it owns (a vDisk delegated to a
 * router other than its vPool's owner is listed under that router, with `delegatedBy`).
 *   alive     its lease-bound registration is there
 *   expired   its lease is gone (dead, cut off or paused) but it did not leave cleanly; or it is named as an
 *             owner without any registration
 * and its role: `owner` (it owns a vPool), `follower` (its mount forwards to the owner of `vpool`), `standby`
 * (waiting to take `vpool` over), or null (a registration from before roles, owning nothing).
 */
import type { Etcd3 } from 'etcd3';
import { KNOWN_ROUTERS, ROUTERS, VPOOLS, type OwnerRecord, type Protection, type RouterRecord, type RouterRole, type Waiting } from './keys.js';

export interface RouterRow {
  name: string;
  state: 'alive' | 'expired';
  role: RouterRole | null;
  /** The vPool it mounts (owns, follows or stands by for). */
  vpool: string | null;
  host: string | null;
  pid: number | null;
  failureDomain: string | null;
  address: string | null;
  dtlServer: string[] | null;
  registeredAt: string | null;
  /** vPools this router owns, with their owner tag. */
  vpools: Array<{ vpool: string; tag: number }>;
  /** vDisks whose record names this router; `delegatedBy`: the vPool's owner that handed it here (ownership per vDisk). */
  vdisks: Array<{ vpool: string; id: string; path: string | null; tag: number; dtl: Protection | null; delegatedBy?: string }>;
  /** A taker (follower, standby) that does not take a dead owner's vPool by itself: the vDisks that could lose writes. */
  waiting: Waiting | null;
}

async function all(client: Etcd3, prefix: string): Promise<Array<[string, string]>> {
  return Object.entries(await client.getAll().prefix(prefix).strings()).map(([k, v]) => [k.slice(prefix.length), v]);
}

export async function listRouters(client: Etcd3): Promise<RouterRow[]> {
  const rows = new Map<string, RouterRow>();
  const row = (name: string, rec: RouterRecord | null, state: RouterRow['state']): RouterRow => {
    let r = rows.get(name);
    if (r === undefined) {
      r = { name, state, role: null, vpool: null, host: null, pid: null, failureDomain: null, address: null, dtlServer: null, registeredAt: null, vpools: [], vdisks: [], waiting: null };
      rows.set(name, r);
    }
    if (rec !== null && (r.host === null || state === 'alive')) {
      Object.assign(r, { state, role: rec.role ?? null, vpool: rec.vpool ?? null, host: rec.host, pid: rec.pid, failureDomain: rec.failureDomain, address: rec.address, dtlServer: rec.dtlServer, registeredAt: rec.registeredAt, waiting: state === 'alive' ? rec.waiting ?? null : null });
    }
    return r;
  };
  for (const [name, v] of await all(client, ROUTERS)) row(name, JSON.parse(v) as RouterRecord, 'alive');
  for (const [name, v] of await all(client, KNOWN_ROUTERS)) if (!rows.has(name)) row(name, JSON.parse(v) as RouterRecord, 'expired');
  for (const [rest, v] of await all(client, VPOOLS)) {
    const parts = rest.split('/');
    // only owner records (a takeover or move request, a move's result are no one's ownership)
    if (!(parts.length === 2 && parts[1] === 'owner') && !(parts.length === 3 && parts[1] === 'vdisks')) continue;
    const rec = JSON.parse(v) as OwnerRecord;
    const owner = rows.get(rec.router) ?? row(rec.router, null, 'expired');
    if (parts.length === 2 && parts[1] === 'owner') owner.vpools.push({ vpool: parts[0], tag: rec.tag });
    else if (parts.length === 3 && parts[1] === 'vdisks') owner.vdisks.push({ vpool: parts[0], id: parts[2], path: rec.path ?? null, tag: rec.tag, dtl: rec.dtl ?? null, ...(rec.delegatedBy === undefined ? {} : { delegatedBy: rec.delegatedBy }) });
  }
  for (const r of rows.values()) if (r.role === null && r.vpools.length > 0) r.role = 'owner';
  return [...rows.values()].sort((a, b) => a.name.localeCompare(b.name));
}
