/**
 * Ownership per vDisk in etcd (docs/cluster.md, "Ownership per vDisk"): the vPool's owner (the holder of its
 * tree and backend claim) hands one vDisk to another live router of the vPool, which serves it from then on,
 * and takes it back. Each change is ONE transaction that bumps the cluster-wide owner tag, so the vDisk's new
 * owner has a tag no earlier owner had (its owner-tag fence in the data, volume/datapath/epoch-fence.ts):
 *
 *   delegateVDisk()     the vPool's owner, once it shipped and closed the vDisk: holds only while the vPool's
 *                       owner record is still (owner, tag), the vDisk's record unchanged (not delegated already)
 *                       and the target's registration the same lease (alive); writes the record
 *                       {router: target, tag: new, delegatedBy: owner, dtl clean}.
 *   returnVDisk()       the vDisk back to the vPool's owner, new tag (its record marked `delegatedBy` the owner
 *                       itself — a takeback to do — until the owner opened it): after its delegate closed it (a move back),
 *                       or with the delegate dead — only once its registration is gone (its lease expired) or
 *                       holds another lease than the record's (the router restarted) and,
 *                       unless forced, its record safe (nothing unshipped, or a sync DTL in sync: ./keys.ts isSafe).
 *   confirmVDiskOwner() the delegate's gate (volume/claim/vdisk-gate.ts): is the record still (router, tag) and
 *                       the router's lease the one it started with, and for how long can that lease not expire?
 *   recordDelegatedVDisk()  the delegate records whether the vDisk's unshipped writes are protected (the takeback rule).
 *   delegatedVDisks()   the vPool's vDisk records that name a delegate.
 *
 * The owner's session (./router-session.ts) keeps the records it wrote (KnownRecords, ./ownership.ts) and deletes
 * the ones no longer in its list: after delegateVDisk or returnVDisk its cache is stale and must be dropped
 * (`known.records = null`, as after a move) before its next recordVDisks — or that would delete the delegate's
 * record, which fences the delegate (its gate finds the record gone).
 */
import type { Etcd3 } from 'etcd3';
import { RegistryError } from './errors.js';
import { isSafe, OWNER_TAG, readJson, routerKey, vdiskKey, vdisksPrefix, vpoolOwnerKey, type OwnerRecord, type Protection, type RouterRecord } from './keys.js';

export interface VDiskOwner {
  router: string;
  tag: number;
}

/** The live registration of `to` if it may take a vDisk of `vpool` (a live router of the vPool: a follower); else why not. */
export async function delegationTarget(client: Etcd3, vpool: string, owner: string, to: string): Promise<RouterRecord> {
  if (to === owner) throw new RegistryError('INVALID', `router '${to}' owns vPool '${vpool}': a vDisk goes back to it with a move back, not a delegation`, { vpool, to });
  const t = await readJson<RouterRecord>(client, routerKey(to));
  if (t === null) throw new RegistryError('NOT_FOUND', `router '${to}' is not alive (no live registration in the registry): a vDisk moves only to a live router of its vPool`, { vpool, to });
  if (t.value.vpool !== vpool || t.value.role !== 'follower') {
    throw new RegistryError('INVALID', `router '${to}' is not a follower of vPool '${vpool}' (it is ${t.value.role ?? 'registered'}${t.value.vpool === undefined ? '' : ` for vPool '${t.value.vpool}'`}): a vDisk moves only to a router that mounts its vPool`, { vpool, to });
  }
  return t.value;
}

/** The new owner tag for the next change, with the counter's revision (for the transaction's condition). */
async function nextTag(client: Etcd3): Promise<{ tag: number; mod: string | 0 }> {
  const kv = (await client.get(OWNER_TAG).exec()).kvs[0];
  return { tag: (kv === undefined ? 0 : Number(kv.value.toString())) + 1, mod: kv === undefined ? 0 : kv.mod_revision };
}

/**
 * Records vDisk `id` (at `path`) of `vpool` as served by router `to` (registration `target`, as checked before the
 * owner closed the vDisk). Returns the new owner tag, or null when the transaction did not hold (the vPool changed
 * owner, the vDisk's record changed, the target's lease is not the one checked): nothing written.
 */
export async function delegateVDisk(client: Etcd3, vpool: string, id: string, path: string, owner: VDiskOwner, target: RouterRecord): Promise<number | null> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const pool = await readJson<OwnerRecord>(client, vpoolOwnerKey(vpool));
    if (pool === null || pool.value.router !== owner.router || pool.value.tag !== owner.tag) return null;
    const rec = await readJson<OwnerRecord>(client, vdiskKey(vpool, id));
    if (rec !== null && rec.value.router !== owner.router) return null; // delegated already
    const live = (await client.get(routerKey(target.name)).exec()).kvs[0];
    if (live === undefined || (JSON.parse(live.value.toString()) as RouterRecord).lease !== target.lease) return null;
    const { tag, mod } = await nextTag(client);
    const now = new Date().toISOString();
    const next: OwnerRecord = { router: target.name, tag, since: now, path, delegatedBy: owner.router, lease: target.lease, dtl: { mode: rec?.value.dtl?.mode ?? 'none', state: rec?.value.dtl?.state ?? 'ok_standalone', dirty: false, since: now } };
    const res = await client.if(OWNER_TAG, 'Mod', '==', mod)
      .and(vpoolOwnerKey(vpool), 'Mod', '==', pool.mod)
      .and(vdiskKey(vpool, id), 'Mod', '==', rec === null ? 0 : rec.mod)
      .and(routerKey(target.name), 'Mod', '==', live.mod_revision)
      .then(client.put(OWNER_TAG).value(String(tag)), client.put(vdiskKey(vpool, id)).value(JSON.stringify(next)))
      .commit();
    if (res.succeeded) return tag;
    // the counter moved (another change of owner anywhere): look again; anything else fails the next look
  }
  throw new RegistryError('BUSY', `recording the handover of vDisk ${id} kept racing with other changes of owner; try again`, { vpool, id });
}

/**
 * vDisk `id` of `vpool` back to the vPool's owner `owner` (still the owner record), from its delegate `from`.
 * `fromDead`: the delegate is gone — holds only while its registration is absent (its lease expired) or under
 * another lease than the record's (restarted) with the record's lease expired too, and, unless
 * `force`, refused (BUSY naming what may be lost) when its record was not safe. Returns the new owner tag, or null
 * when the transaction did not hold (the records changed; for a live delegate: it must hand the vDisk back itself).
 */
export async function returnVDisk(client: Etcd3, vpool: string, id: string, owner: VDiskOwner, from: VDiskOwner, opts: { fromDead?: boolean; force?: boolean } = {}): Promise<number | null> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const pool = await readJson<OwnerRecord>(client, vpoolOwnerKey(vpool));
    if (pool === null || pool.value.router !== owner.router || pool.value.tag !== owner.tag) return null;
    const rec = await readJson<OwnerRecord>(client, vdiskKey(vpool, id));
    if (rec === null || rec.value.router !== from.router || rec.value.tag !== from.tag) return null;
    if (opts.fromDead === true && opts.force !== true && !isSafe(rec.value.dtl)) {
      const d = rec.value.dtl;
      throw new RegistryError('BUSY', `vDisk ${rec.value.path ?? id} is not taken back automatically from dead router '${from.router}' (owner tag ${from.tag}): its writes not yet in the backend may be lost (${d === undefined ? 'no protection recorded' : `DTL ${d.mode}, ${d.state}, unshipped since ${d.since}`})`, { vpool, id, record: rec.value });
    }
    let regMod: string | 0 = 0;
    // a takeback that router `from` had still to do (a former owner of the vPool whose open failed: it never served
    // the vDisk since its return, and the vPool's claim, now this owner's, fences its backend writes): its
    // registration does not matter, only the record's protection
    const undone = rec.value.delegatedBy === rec.value.router;
    if (opts.fromDead === true && !undone) {
      // dead: no registration, or one under another lease than the one the vDisk was handed to (restarted)
      const reg = await readJson<RouterRecord>(client, routerKey(from.router));
      if (reg !== null && (rec.value.lease === undefined || reg.value.lease === rec.value.lease)) return null;
      if (reg !== null) {
        // registered again under another lease: the old lease must be gone too (while it lives, the delegate's
        // gate may let a write through, within what it was told is left of it)
        const old = await client.leaseClient.leaseTimeToLive({ ID: rec.value.lease! });
        if (Number(old.TTL) > 0) return null;
        regMod = reg.mod;
      }
    }
    const { tag, mod } = await nextTag(client);
    const now = new Date().toISOString();
    // `delegatedBy` the owner itself: a takeback still to do until the owner opened it (its session rewrites the
    // record without it then). Kept by the owner's session meanwhile (the vDisk is in no list while not open), and
    // by a release; the next owner's start takes it back like a delegated vDisk (tools/daemon/vdisk-move.ts adopt).
    // Its protection: the delegate's (from a dead one: its unshipped writes are in the DTL, or at risk); after a
    // live delegate's hand-back, or the operator's --force, nothing more is at risk.
    const safe = opts.fromDead !== true || opts.force === true;
    const dtl: Protection | undefined = safe ? { mode: rec.value.dtl?.mode ?? 'none', state: rec.value.dtl?.state ?? 'ok_standalone', dirty: false, since: now } : rec.value.dtl;
    const next: OwnerRecord = { router: owner.router, tag, since: now, ...(rec.value.path === undefined ? {} : { path: rec.value.path }), ...(dtl === undefined ? {} : { dtl }), delegatedBy: owner.router };
    let txn = client.if(OWNER_TAG, 'Mod', '==', mod)
      .and(vpoolOwnerKey(vpool), 'Mod', '==', pool.mod)
      .and(vdiskKey(vpool, id), 'Mod', '==', rec.mod);
    if (opts.fromDead === true && !undone) txn = regMod === 0 ? txn.and(routerKey(from.router), 'Create', '==', 0) : txn.and(routerKey(from.router), 'Mod', '==', regMod);
    const res = await txn.then(client.put(OWNER_TAG).value(String(tag)), client.put(vdiskKey(vpool, id)).value(JSON.stringify(next))).commit();
    if (res.succeeded) return tag;
    // (the registration changed: the next look decides whether it is the delegate's)
  }
  throw new RegistryError('BUSY', `recording the return of vDisk ${id} kept racing with other changes of owner; try again`, { vpool, id });
}

/**
 * The delegate's confirmation (volume/claim/vdisk-gate.ts ConfirmOwnership): `{ validMs }` while the record of
 * `id` is (router, tag) and the router's registration holds `lease`, `validMs` being what is left of that lease;
 * `{ lost }` saying why otherwise. A lease lost and registered again (etcd gone for longer than it) is lost: the
 * vPool's owner may have taken the vDisk back meanwhile.
 */
export async function confirmVDiskOwner(client: Etcd3, vpool: string, id: string, me: VDiskOwner, lease: string): Promise<{ validMs: number } | { lost: string }> {
  const [rec, reg, ttl] = await Promise.all([
    readJson<OwnerRecord>(client, vdiskKey(vpool, id)),
    readJson<RouterRecord>(client, routerKey(me.router)),
    client.leaseClient.leaseTimeToLive({ ID: lease }),
  ]);
  if (rec === null) return { lost: `the vDisk's record is gone from the registry (vPool '${vpool}' released or the vDisk removed)` };
  if (rec.value.router !== me.router || rec.value.tag !== me.tag) return { lost: `router '${rec.value.router}' owns it now (owner tag ${rec.value.tag}; this router's was ${me.tag})` };
  if (reg === null || reg.value.lease !== lease) return { lost: `this router's registry lease ${lease} expired (the vPool's owner may take the vDisk back once it has)` };
  const left = Number(ttl.TTL);
  // etcd says the lease expires "in under TTL+1 seconds": at least TTL whole seconds from the question on
  return { validMs: Number.isFinite(left) && left > 0 ? left * 1000 : 0 };
}

/** The vPool's vDisks served by a router other than the vPool's owner: id → record. */
export async function delegatedVDisks(client: Etcd3, vpool: string): Promise<Map<string, OwnerRecord>> {
  const out = new Map<string, OwnerRecord>();
  for (const [k, v] of Object.entries(await client.getAll().prefix(vdisksPrefix(vpool)).strings())) {
    const rec = JSON.parse(v) as OwnerRecord;
    if (rec.delegatedBy !== undefined) out.set(k.slice(vdisksPrefix(vpool).length), rec);
  }
  return out;
}

/**
 * The delegate records whether the vDisk's unshipped writes are protected (as the vPool's owner does for its own,
 * ./ownership.ts recordVDisks): only while the record is still (router, tag). False when it is not.
 */
export async function recordDelegatedVDisk(client: Etcd3, vpool: string, id: string, me: VDiskOwner, dtl: Omit<Protection, 'since'>): Promise<boolean> {
  const rec = await readJson<OwnerRecord>(client, vdiskKey(vpool, id));
  if (rec === null || rec.value.router !== me.router || rec.value.tag !== me.tag) return false;
  const cur = rec.value.dtl;
  if (cur !== undefined && cur.mode === dtl.mode && cur.state === dtl.state && cur.dirty === dtl.dirty) return true;
  const next: OwnerRecord = { ...rec.value, dtl: { ...dtl, since: new Date().toISOString() } };
  const res = await client.if(vdiskKey(vpool, id), 'Mod', '==', rec.mod).then(client.put(vdiskKey(vpool, id)).value(JSON.stringify(next))).commit();
  return res.succeeded;
}
