/**
 * Requests to move ONE vDisk between routers (docs/cluster.md, "Ownership per vDisk"): `vpoolfs move FILE --to
 * ROUTER` writes `/vpoolfs/vpools/<vpool>/vdisk-move` {id, path, to, from, tag, at}; the vPool's owner polls it
 * (tools/daemon/vdisk-move.ts), runs the move (to a follower: a delegation, ./vdisk-delegation.ts; to itself: a
 * takeback) and writes `…/vdisk-move-result` {id, ok, message} as it deletes the request, in one transaction.
 * One vDisk move at a time per vPool. Asked only of a live owner, for a live follower of the vPool or the owner.
 */
import { randomUUID } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { RegistryError } from './errors.js';
import { knownRouterKey, readJson, routerKey, setPhase, vpoolOwnerKey, VPOOLS, type OwnerRecord, type RouterRecord } from './keys.js';

export const vdiskMoveKey = (vpool: string): string => `${VPOOLS}${vpool}/vdisk-move`;
export const vdiskMoveResultKey = (vpool: string): string => `${VPOOLS}${vpool}/vdisk-move-result`;

export interface VDiskMoveRequest {
  id: string;
  vpool: string;
  /** The vDisk's path in the vPool. */
  path: string;
  to: string;
  /** The vPool's owner and its tag when asked: a request for an earlier owner is void. */
  from: string;
  tag: number;
  at: string;
  phase?: string;
  /** Back to the owner from a dead delegate even when its record is not safe (the operator's consent). */
  force?: boolean;
}

export interface VDiskMoveResult {
  id: string;
  ok: boolean;
  message: string;
  at: string;
}

/** Asks the owner of `vpool` to move the vDisk at `path` to router `to` (a live follower, or the owner: back). */
export async function requestVDiskMove(client: Etcd3, vpool: string, path: string, to: string, force = false): Promise<VDiskMoveRequest> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const owner = await readJson<OwnerRecord>(client, vpoolOwnerKey(vpool));
    if (owner === null) throw new RegistryError('NOT_FOUND', `vPool '${vpool}' has no owner in the registry (unknown, or released by a clean stop): nothing to move`, { vpool });
    if ((await readJson<RouterRecord>(client, routerKey(owner.value.router))) === null) {
      throw new RegistryError('BUSY', `vPool '${vpool}' is owned by router '${owner.value.router}', whose registry lease has expired: a vDisk is moved by a live owner`, { vpool, owner: owner.value });
    }
    if (to !== owner.value.router) {
      const target = await readJson<RouterRecord>(client, routerKey(to));
      if (target === null) {
        if ((await client.get(knownRouterKey(to)).string()) === null) throw new RegistryError('NOT_FOUND', `unknown router '${to}': the registry has no router of that name (vpoolfs router list shows them)`, { vpool, to });
        throw new RegistryError('BUSY', `router '${to}' is not alive (its registry lease has expired): a vDisk moves only to a live router of its vPool`, { vpool, to });
      }
      if (target.value.vpool !== vpool || target.value.role !== 'follower') {
        throw new RegistryError('INVALID', `router '${to}' is not a follower of vPool '${vpool}' (it is ${target.value.role ?? 'registered'}${target.value.vpool === undefined ? '' : ` for vPool '${target.value.vpool}'`}): a vDisk moves only to a router that mounts its vPool`, { vpool, to });
      }
    }
    const running = await readJson<VDiskMoveRequest>(client, vdiskMoveKey(vpool));
    if (running !== null && running.value.from === owner.value.router && running.value.tag === owner.value.tag) {
      throw new RegistryError('BUSY', `a vDisk move of vPool '${vpool}' is already running: ${running.value.path} to router '${running.value.to}', asked at ${running.value.at}`, { vpool, running: running.value });
    }
    const req: VDiskMoveRequest = { id: randomUUID(), vpool, path, to, from: owner.value.router, tag: owner.value.tag, at: new Date().toISOString(), phase: 'asked', ...(force ? { force } : {}) };
    const res = await client.if(vpoolOwnerKey(vpool), 'Mod', '==', owner.mod)
      .and(vdiskMoveKey(vpool), 'Mod', '==', running === null ? 0 : running.mod)
      .then(client.put(vdiskMoveKey(vpool)).value(JSON.stringify(req)))
      .commit();
    if (res.succeeded) return req;
  }
  throw new RegistryError('BUSY', `asking for a vDisk move of vPool '${vpool}' kept racing with other changes; try again`, { vpool });
}

export async function readVDiskMove(client: Etcd3, vpool: string): Promise<VDiskMoveRequest | null> {
  return (await readJson<VDiskMoveRequest>(client, vdiskMoveKey(vpool)))?.value ?? null;
}

export async function readVDiskMoveResult(client: Etcd3, vpool: string): Promise<VDiskMoveResult | null> {
  return (await readJson<VDiskMoveResult>(client, vdiskMoveResultKey(vpool)))?.value ?? null;
}

/** The owner says where the move stands (for the CLI), while the request is still `req`. */
export function vdiskMovePhase(client: Etcd3, req: VDiskMoveRequest, phase: string): Promise<void> {
  return setPhase(client, vdiskMoveKey(req.vpool), req.id, phase);
}

/** The request ends (moved or not): deleted, the result written, in one transaction. */
export async function endVDiskMove(client: Etcd3, req: VDiskMoveRequest, ok: boolean, message: string): Promise<void> {
  const result: VDiskMoveResult = { id: req.id, ok, message, at: new Date().toISOString() };
  const cur = await readJson<VDiskMoveRequest>(client, vdiskMoveKey(req.vpool));
  const txn = cur !== null && cur.value.id === req.id
    ? client.if(vdiskMoveKey(req.vpool), 'Mod', '==', cur.mod).then(client.delete().key(vdiskMoveKey(req.vpool)), client.put(vdiskMoveResultKey(req.vpool)).value(JSON.stringify(result)))
    : client.if(vdiskMoveKey(req.vpool), 'Create', '==', 0).then(client.put(vdiskMoveResultKey(req.vpool)).value(JSON.stringify(result)));
  await txn.commit();
}
