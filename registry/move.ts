/**
 * A planned move of a vPool from its live owner to one of its live followers (docs/cluster.md, "Moves"), the
 * etcd half. Ownership is per vPool (the tree has one writer), so a move hands over every vDisk of the vPool.
 *
 *   requestMove()   `vpoolfs move` (or the owner itself, at the end of a live migration) writes
 *                   `/vpoolfs/vpools/<vpool>/move`: {id, from, tag, to, …}, only while `from`/`tag` is the owner,
 *                   the target a live follower of that vPool, and no other move of it is running.
 *   readMove()      the owner polls it (every quarter second); so does the CLI, for the progress (`phase`).
 *   commitMove()    the owner, once it has held its calls, shipped everything and closed the vPool (backend claim
 *                   released, DTL retired): ONE transaction, holding only while the owner record is still its own,
 *                   the target's registration still the same lease (alive) and the request still there, writes the
 *                   new owner (the owner tag counter + 1, `movedFrom`), every vDisk's record for the target with
 *                   the new tag (clean: nothing unshipped, so the takeover rule lets the old owner take the vPool
 *                   back by itself if the target dies next), deletes the request and writes the result.
 *   endMove()       a move that did not happen (refused by the owner, the target gone, the transaction lost):
 *                   the request is deleted and the result written; the owner serves on.
 */
import { randomUUID } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { RegistryError } from './errors.js';
import { knownRouterKey, moveKey, moveResultKey, OWNER_TAG, readJson, routerKey, setPhase, vdiskKey, vdisksPrefix, vpoolOwnerKey, type OwnerRecord, type Protection, type RouterRecord } from './keys.js';

export interface MoveRequest {
  id: string;
  vpool: string;
  from: string;
  /** The owner tag of `from` when asked: a request for an earlier owner is void. */
  tag: number;
  to: string;
  at: string;
  /** `operator` (vpoolfs move) or `open handles` (the automatic move at the end of a live migration). */
  reason: string;
  /** Where the owner is, for the CLI's progress: asked, holding calls, shipping, handing over. */
  phase?: string;
}

export interface MoveResult {
  id: string;
  ok: boolean;
  from: string;
  to: string;
  /** The new owner tag when it moved. */
  tag?: number;
  message: string;
  at: string;
}

/**
 * Asks the owner of `vpool` to hand it to router `to`. Refused with a clear message (nothing written): no owner,
 * the owner not alive, `to` unknown / not alive / not a follower of this vPool / the owner already, a move running.
 */
export async function requestMove(client: Etcd3, vpool: string, to: string, reason: string): Promise<MoveRequest> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const owner = await readJson<OwnerRecord>(client, vpoolOwnerKey(vpool));
    if (owner === null) throw new RegistryError('NOT_FOUND', `vPool '${vpool}' has no owner in the registry (unknown, or released by a clean stop): nothing to move`, { vpool });
    if (owner.value.router === to) throw new RegistryError('INVALID', `router '${to}' owns vPool '${vpool}' already (owner tag ${owner.value.tag}): nothing to move`, { vpool, to });
    const from = await readJson<RouterRecord>(client, routerKey(owner.value.router));
    if (from === null) throw new RegistryError('BUSY', `vPool '${vpool}' is owned by router '${owner.value.router}', whose registry lease has expired: a move is a handover by a live owner; a dead owner's vPool is taken over (vpoolfs takeover)`, { vpool, owner: owner.value });
    const target = await readJson<RouterRecord>(client, routerKey(to));
    if (target === null) {
      const known = await client.get(knownRouterKey(to)).string();
      if (known === null) throw new RegistryError('NOT_FOUND', `unknown router '${to}': the registry has no router of that name (vpoolfs router list shows them)`, { vpool, to });
      throw new RegistryError('BUSY', `router '${to}' is not alive (its registry lease has expired): a vPool moves only to a live follower`, { vpool, to });
    }
    const t = target.value;
    if (t.vpool !== vpool || t.role !== 'follower') {
      throw new RegistryError('INVALID', `router '${to}' is not a follower of vPool '${vpool}' (it is ${t.role ?? 'registered'}${t.vpool === undefined ? '' : ` for vPool '${t.vpool}'`}): a vPool moves only to a router that mounts it as a follower`, { vpool, to, role: t.role, its: t.vpool });
    }
    const running = await readJson<MoveRequest>(client, moveKey(vpool));
    if (running !== null && running.value.from === owner.value.router && running.value.tag === owner.value.tag) {
      const r = running.value;
      throw new RegistryError('BUSY', `a move of vPool '${vpool}' is already running: from router '${r.from}' to router '${r.to}' (${r.reason}), asked at ${r.at}${r.phase === undefined ? '' : `, ${r.phase}`}`, { vpool, running: r });
    }
    const req: MoveRequest = { id: randomUUID(), vpool, from: owner.value.router, tag: owner.value.tag, to, at: new Date().toISOString(), reason, phase: 'asked' };
    // a request left by an earlier owner (it died or stopped meanwhile) is void and replaced
    const res = await client.if(vpoolOwnerKey(vpool), 'Mod', '==', owner.mod)
      .and(moveKey(vpool), 'Mod', '==', running === null ? 0 : running.mod)
      .then(client.put(moveKey(vpool)).value(JSON.stringify(req)))
      .commit();
    if (res.succeeded) return req;
  }
  throw new RegistryError('BUSY', `asking for a move of vPool '${vpool}' kept racing with other changes; try again`, { vpool });
}

/** The move asked of `vpool`'s owner, or null. */
export async function readMove(client: Etcd3, vpool: string): Promise<MoveRequest | null> {
  return (await readJson<MoveRequest>(client, moveKey(vpool)))?.value ?? null;
}

/** The result of the last move of `vpool`, or null. */
export async function readMoveResult(client: Etcd3, vpool: string): Promise<MoveResult | null> {
  return (await readJson<MoveResult>(client, moveResultKey(vpool)))?.value ?? null;
}

/** The owner says where the move stands (for the CLI); only while the request is still `req`. */
export function movePhase(client: Etcd3, req: MoveRequest, phase: string): Promise<void> {
  return setPhase(client, moveKey(req.vpool), req.id, phase);
}

/** The live registration of the target, as the owner checks it before handing over (null: not alive). */
export async function moveTarget(client: Etcd3, req: MoveRequest): Promise<RouterRecord | null> {
  const t = await readJson<RouterRecord>(client, routerKey(req.to));
  return t !== null && t.value.vpool === req.vpool && t.value.role === 'follower' ? t.value : null;
}

/**
 * The handover: one transaction (see the header). `target` is the target's registration as checked before the
 * owner closed the vPool; `vdisks` the vPool's vDisks (all shipped). Returns the new owner tag, or null when the
 * transaction did not hold (the target's lease changed, the request went, the owner record changed): nothing
 * was written and the old owner serves on.
 */
export async function commitMove(client: Etcd3, req: MoveRequest, target: RouterRecord, vdisks: Array<{ id: string; path: string; dtl: Omit<Protection, 'since' | 'dirty'> }>): Promise<number | null> {
  const { vpool } = req;
  const owner = await readJson<OwnerRecord>(client, vpoolOwnerKey(vpool));
  const cur = await readJson<MoveRequest>(client, moveKey(vpool));
  const live = await client.get(routerKey(req.to)).exec();
  const counter = await client.get(OWNER_TAG).exec();
  const ckv = counter.kvs[0];
  const tkv = live.kvs[0];
  if (owner === null || owner.value.router !== req.from || owner.value.tag !== req.tag || cur === null || cur.value.id !== req.id || ckv === undefined || tkv === undefined) return null;
  if ((JSON.parse(tkv.value.toString()) as RouterRecord).lease !== target.lease) return null;
  const tag = Number(ckv.value.toString()) + 1;
  const now = new Date().toISOString();
  const rec: OwnerRecord = { router: req.to, tag, since: now, state: target.state, movedFrom: req.from };
  const result: MoveResult = { id: req.id, ok: true, from: req.from, to: req.to, tag, message: `router '${req.to}' owns vPool '${vpool}' now (owner tag ${req.tag} → ${tag})`, at: now };
  // records of vDisks no longer in the tree go (etcd refuses a put and a delete of one key in a transaction)
  const keep = new Set(vdisks.map((d) => vdiskKey(vpool, d.id)));
  // ...but a delegated vDisk's record stays (one the move could not take back first: a dead delegate's, not safe):
  // the new owner's start takes it back or asks for --force (./vdisk-delegation.ts), as after a release
  const stale = Object.entries(await client.getAll().prefix(vdisksPrefix(vpool)).strings())
    .filter(([k, v]) => !keep.has(k) && (JSON.parse(v) as OwnerRecord).delegatedBy === undefined).map(([k]) => k);
  const ops = [
    client.put(OWNER_TAG).value(String(tag)),
    client.put(vpoolOwnerKey(vpool)).value(JSON.stringify(rec)),
    ...stale.map((k) => client.delete().key(k)),
    ...vdisks.map((d) => client.put(vdiskKey(vpool, d.id)).value(JSON.stringify({ router: req.to, tag, since: now, path: d.path, dtl: { ...d.dtl, dirty: false, since: now } } satisfies OwnerRecord))),
    client.delete().key(moveKey(vpool)),
    client.put(moveResultKey(vpool)).value(JSON.stringify(result)),
  ];
  const res = await client.if(OWNER_TAG, 'Mod', '==', ckv.mod_revision)
    .and(vpoolOwnerKey(vpool), 'Mod', '==', owner.mod)
    .and(moveKey(vpool), 'Mod', '==', cur.mod)
    .and(routerKey(req.to), 'Mod', '==', tkv.mod_revision)
    .then(...ops)
    .commit();
  return res.succeeded ? tag : null;
}

/** A move that did not happen: the request goes (if still `req`) and the result says why. */
export async function endMove(client: Etcd3, req: MoveRequest, message: string): Promise<void> {
  const result: MoveResult = { id: req.id, ok: false, from: req.from, to: req.to, message, at: new Date().toISOString() };
  const cur = await readJson<MoveRequest>(client, moveKey(req.vpool));
  const txn = cur !== null && cur.value.id === req.id
    ? client.if(moveKey(req.vpool), 'Mod', '==', cur.mod).then(client.delete().key(moveKey(req.vpool)), client.put(moveResultKey(req.vpool)).value(JSON.stringify(result)))
    : client.if(moveKey(req.vpool), 'Create', '==', 0).then(client.put(moveResultKey(req.vpool)).value(JSON.stringify(result)));
  await txn.commit();
}
