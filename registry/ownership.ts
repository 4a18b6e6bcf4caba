/**
 * Ownership in etcd (docs/cluster.md): which router serves a vPool's vDisks, and the owner tag that orders
 * owners. The tag comes from the cluster-wide counter `/vpoolfs/owner-tag`, bumped in the same transaction
 * that writes the new owner, so two routers taking at once cannot both win: the transaction compares the
 * counter's and the owner key's revisions, and the loser sees the winner when it tries again.
 *
 * Today the vPool's tree has one writer, so ownership is taken for the whole vPool (`…/owner`) and recorded
 * for each vDisk (`…/vdisks/<id>`, with the same tag): a router opens the vPool for I/O only if it owns it —
 * it takes it when unowned, released, owned by itself, or owned by a router whose lease is gone. The records
 * per vDisk are what `router list` shows and what per-vDisk moves will change (issue 15).
 */
import type { Etcd3 } from 'etcd3';
import { logger } from '../util/log.js';
import { RegistryError } from './errors.js';
import { moveKey, OWNER_TAG, readJson, routerKey, takeoverKey, vdiskKey, vdisksPrefix, vpoolOwnerKey, type OwnerRecord, type Protection, type RouterRecord } from './keys.js';
import { describeRisks, takeoverRequested, takeoverRisks } from './takeover.js';

const log = logger('registry');

export interface Taken {
  tag: number;
  /** The owner record this one replaced (null: unowned). */
  previous: OwnerRecord | null;
  /** The previous owner was another router whose lease is gone (or forced): it must be fenced. */
  takeover: boolean;
}

/**
 * Takes ownership of `vpool` for `router` (serving from the state directory `state`). Refused (BUSY, naming the owner) while another router owns it and
 * its registration is alive, unless `force` (the operator says that router is gone). From an owner whose
 * registration is gone, refused too (BUSY with `context.risks`) while some of its vDisks were not recorded
 * safe (./takeover.ts), unless `force` or `vpoolfs takeover --force` asked for it.
 */
export async function takeVPool(client: Etcd3, vpool: string, router: string, force = false, state?: string): Promise<Taken> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const owner = await readJson<OwnerRecord>(client, vpoolOwnerKey(vpool));
    // the same router and state directory (a restart) keeps its tag; the same name with another state directory
    // is another owner: the one before is gone (this process holds the name's registration now)
    if (owner !== null && owner.value.router === router && (owner.value.state ?? state) === state) return { tag: owner.value.tag, previous: owner.value, takeover: false };
    if (owner !== null && owner.value.router !== router) {
      const live = await readJson<RouterRecord>(client, routerKey(owner.value.router));
      if (live !== null && !force) {
        const r = live.value;
        throw new RegistryError('BUSY', `vPool '${vpool}' is owned by router '${owner.value.router}' (owner tag ${owner.value.tag}, since ${owner.value.since}), which is alive: registered from host ${r.host}, pid ${r.pid}, lease ${r.leaseSeconds} s${r.failureDomain === null ? '' : `, failure domain ${r.failureDomain}`}. Its vDisks open for I/O only there; this router takes them over once that one's lease has expired (or now with --force, only if it is really gone)`,
          { vpool, owner: owner.value, router: r });
      }
      if (live === null && !force) {
        const risks = await takeoverRisks(client, vpool, owner.value);
        if (risks.length > 0 && await takeoverRequested(client, vpool, owner.value, router) === null) {
          throw new RegistryError('BUSY', `vPool '${vpool}' is not taken over automatically from router '${owner.value.router}' (owner tag ${owner.value.tag}, registry lease expired): ${risks.length} of its vDisks may lose writes not yet in the backend — ${describeRisks(risks)}. Run \`vpoolfs takeover --registry … --vpool ${vpool} --force\` to take it anyway`,
            { vpool, owner: owner.value, risks });
        }
        if (risks.length > 0) log.warn(`TAKEOVER FORCED by \`vpoolfs takeover\`: vPool '${vpool}' from router '${owner.value.router}' may lose writes — ${describeRisks(risks)}`, { vpool, owner: owner.value, risks });
      }
    }
    const counter = await client.get(OWNER_TAG).exec();
    const ckv = counter.kvs[0];
    const tag = (ckv === undefined ? 0 : Number(ckv.value.toString())) + 1;
    const rec: OwnerRecord = { router, tag, since: new Date().toISOString(), ...(state === undefined ? {} : { state }) };
    const res = await client
      .if(OWNER_TAG, 'Mod', '==', ckv === undefined ? 0 : ckv.mod_revision)
      .and(vpoolOwnerKey(vpool), 'Mod', '==', owner === null ? 0 : owner.mod)
      .then(client.put(OWNER_TAG).value(String(tag)), client.put(vpoolOwnerKey(vpool)).value(JSON.stringify(rec)), client.delete().key(takeoverKey(vpool)),
        // a move asked of the owner before (it died or stopped meanwhile) is void with a new owner
        client.delete().key(moveKey(vpool)))
      .commit();
    if (!res.succeeded) continue; // another change of owner, anywhere, in between: look again
    const takeover = owner !== null;
    if (takeover) {
      log.warn(`${force ? 'FORCED TAKEOVER of' : 'taking over'} vPool '${vpool}' from router '${owner.value.router}' (owner tag ${owner.value.tag} → ${tag})${force ? '' : ', whose registry lease has expired'}`, { vpool, previous: owner.value, tag });
    } else {
      log.info(`took ownership of vPool '${vpool}' (owner tag ${tag})`, { vpool, tag });
    }
    return { tag, previous: owner?.value ?? null, takeover };
  }
  throw new RegistryError('BUSY', `taking ownership of vPool '${vpool}' kept racing with other changes of owner; try again`, { vpool });
}

/** The current owner of `vpool`, or null. */
export async function vpoolOwner(client: Etcd3, vpool: string): Promise<OwnerRecord | null> {
  return (await readJson<OwnerRecord>(client, vpoolOwnerKey(vpool)))?.value ?? null;
}

/**
 * What an owner knows is recorded in etcd for its vDisks (id → record), kept by its session between calls of
 * recordVDisks: with it a change costs etcd O(changed vDisks) — only the records that differ are written —
 * rather than a read of every record of the vPool (which made each create of a vDisk O(vDisks): an owner
 * creating its ~6,000th vDisk with a 2 s lease lost it). `records` null: not known (the first call, after a
 * rejoin, a failed call): the next call reads the prefix once.
 */
export interface KnownRecords {
  records: Map<string, OwnerRecord> | null;
}

/**
 * Records the vPool's vDisks as owned by `router` with `tag`, in transactions (≤ TXN_OPS operations each)
 * that hold only while the vPool's owner is still (router, tag); vDisks gone from the list lose their record.
 * Returns false when ownership was lost (nothing more written). `known`: see KnownRecords (without it, every
 * record of the vPool is read).
 */
export async function recordVDisks(client: Etcd3, vpool: string, router: string, tag: number, vdisks: Array<{ id: string; path: string; dtl?: Protection }>, known?: KnownRecords): Promise<boolean> {
  const owner = await readJson<OwnerRecord>(client, vpoolOwnerKey(vpool));
  if (owner === null || owner.value.router !== router || owner.value.tag !== tag) return false;
  let existing = known?.records ?? null;
  if (existing === null) {
    existing = new Map<string, OwnerRecord>();
    const kvs = await client.getAll().prefix(vdisksPrefix(vpool)).strings();
    for (const [k, v] of Object.entries(kvs)) existing.set(k.slice(vdisksPrefix(vpool).length), JSON.parse(v) as OwnerRecord);
  }
  if (known !== undefined) known.records = null; // until every batch below went through
  const after = new Map<string, OwnerRecord>();
  const ops = [];
  const now = new Date().toISOString();
  for (const d of vdisks) {
    const cur = existing.get(d.id);
    // (a record `delegatedBy` this router itself is a takeback to do: once the vDisk is listed here it is done)
    if (cur !== undefined && cur.router === router && cur.tag === tag && cur.delegatedBy === undefined && cur.path === d.path && JSON.stringify(cur.dtl) === JSON.stringify(d.dtl)) {
      after.set(d.id, cur);
      continue;
    }
    const rec: OwnerRecord = { router, tag, since: cur?.router === router && cur.tag === tag ? cur.since : now, path: d.path, ...(d.dtl === undefined ? {} : { dtl: d.dtl }) };
    after.set(d.id, rec);
    ops.push(client.put(vdiskKey(vpool, d.id)).value(JSON.stringify(rec)));
  }
  for (const [id, rec] of existing) {
    if (after.has(id)) continue;
    // a vDisk delegated to another router (./vdisk-delegation.ts) is not in the owner's list: its record stays
    if (rec.delegatedBy !== undefined) after.set(id, rec);
    else ops.push(client.delete().key(vdiskKey(vpool, id)));
  }
  // etcd refuses a transaction of more than 128 operations (--max-txn-ops): a vPool with more vDisks changed at
  // once (every vDisk at a mount or a takeover) is recorded in several, each still conditional on the ownership
  for (let i = 0; i < ops.length; i += TXN_OPS) {
    const res = await client.if(vpoolOwnerKey(vpool), 'Mod', '==', owner.mod).then(...ops.slice(i, i + TXN_OPS)).commit();
    if (!res.succeeded) return false;
  }
  if (known !== undefined) known.records = after;
  return true;
}

/** Operations per etcd transaction when recording vDisks (etcd's default limit is 128). */
const TXN_OPS = 100;

/**
 * A clean stop: the vPool becomes unowned (if still ours) and its vDisk records go — except those of delegated
 * vDisks (`delegatedBy`: ./vdisk-delegation.ts) the stop could not take back (a dead delegate whose record is not
 * safe, a live one that did not hand it back, a takeback still failing here): the next owner's start reads them
 * and meets the same question (the takeback rule, `--force`) instead of opening the vDisk from the backend
 * without a record, a fence or the delegate's consent.
 */
export async function releaseVPool(client: Etcd3, vpool: string, router: string, tag: number): Promise<boolean> {
  const owner = await readJson<OwnerRecord>(client, vpoolOwnerKey(vpool));
  if (owner === null || owner.value.router !== router || owner.value.tag !== tag) return false;
  const recs = Object.entries(await client.getAll().prefix(vdisksPrefix(vpool)).strings());
  const kept = recs.filter(([, v]) => (JSON.parse(v) as OwnerRecord).delegatedBy !== undefined);
  if (kept.length === 0) {
    const res = await client.if(vpoolOwnerKey(vpool), 'Mod', '==', owner.mod)
      .then(client.delete().key(vpoolOwnerKey(vpool)), client.delete().prefix(vdisksPrefix(vpool)), client.delete().key(moveKey(vpool)))
      .commit();
    return res.succeeded;
  }
  // the others go first (in transactions of TXN_OPS, each while the vPool is still ours), the owner key last
  const gone = recs.filter(([, v]) => (JSON.parse(v) as OwnerRecord).delegatedBy === undefined).map(([k]) => k);
  for (let i = 0; i < gone.length; i += TXN_OPS) {
    const res = await client.if(vpoolOwnerKey(vpool), 'Mod', '==', owner.mod).then(...gone.slice(i, i + TXN_OPS).map((k) => client.delete().key(k))).commit();
    if (!res.succeeded) return false;
  }
  const res = await client.if(vpoolOwnerKey(vpool), 'Mod', '==', owner.mod).then(client.delete().key(vpoolOwnerKey(vpool)), client.delete().key(moveKey(vpool))).commit();
  if (res.succeeded) {
    log.warn(`released vPool '${vpool}' keeping the records of ${kept.length} delegated vDisk(s) not taken back: its next owner takes them back (or asks for --force) at its start`,
      { vpool, kept: Object.fromEntries(kept.map(([k, v]) => { const r = JSON.parse(v) as OwnerRecord; return [r.path ?? k, { router: r.router, tag: r.tag, dtl: r.dtl }]; })) });
  }
  return res.succeeded;
}
