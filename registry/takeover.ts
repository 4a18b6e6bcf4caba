/**
 * The takeover rule (docs/cluster.md, "Takeover: when it is automatic"): a router whose registry lease expired
 * leaves its vPool to a taker (follower, standby, a plain mount) automatically only when every vDisk it owned
 * was recorded safe by it — nothing unshipped, or a `sync` DTL in `ok_sync` (its owner records that in
 * `/vpoolfs/vpools/<vpool>/vdisks/<id>`, `dtl`). Otherwise the takers wait until an operator runs
 * `vpoolfs takeover --vpool NAME --force`, which writes `/vpoolfs/vpools/<vpool>/takeover` naming that dead
 * owner and its tag (and optionally the router that shall take it); a taker honours it only for that owner and
 * tag, so a key left from an earlier takeover never lets a later one through. The taking transaction deletes it.
 */
import type { Etcd3 } from 'etcd3';
import { isSafe, takeoverKey, vdisksPrefix, type OwnerRecord, type Risk } from './keys.js';

/** What `vpoolfs takeover --force` writes. */
export interface TakeoverRequest {
  owner: string;
  tag: number;
  /** Only this router may take it (null: any waiting one). */
  router: string | null;
  at: string;
  risks: Risk[];
}

function why(r: OwnerRecord): string {
  const p = r.dtl;
  if (p === undefined) return 'its owner recorded nothing about its DTL (a router older than this rule): unshipped writes may be lost';
  const dtl = `DTL ${p.mode}, ${p.state}`;
  if (p.mode === 'none') return `writes not yet in the backend since ${p.since}, ${dtl}: they are lost`;
  if (p.mode === 'async') return `writes not yet in the backend since ${p.since}, ${dtl}: those its DTL server had not received yet are lost`;
  return `writes not yet in the backend since ${p.since}, ${dtl} (not in sync): writes the DTL missed are lost`;
}

/** The vDisks of `owner` (the vPool's dead owner, its tag) whose unshipped writes a takeover may lose. */
export async function takeoverRisks(client: Etcd3, vpool: string, owner: OwnerRecord): Promise<Risk[]> {
  const prefix = vdisksPrefix(vpool);
  const out: Risk[] = [];
  for (const [k, v] of Object.entries(await client.getAll().prefix(prefix).strings())) {
    const rec = JSON.parse(v) as OwnerRecord;
    if (rec.router !== owner.router || rec.tag !== owner.tag || isSafe(rec.dtl)) continue;
    out.push({ id: k.slice(prefix.length), path: rec.path ?? null, dtl: rec.dtl ?? null, why: why(rec) });
  }
  return out.sort((a, b) => (a.path ?? a.id).localeCompare(b.path ?? b.id));
}

/** The operator's request to take `owner`'s vPool despite the risks, if it names this owner, tag and router. */
export async function takeoverRequested(client: Etcd3, vpool: string, owner: OwnerRecord, router: string): Promise<TakeoverRequest | null> {
  const v = await client.get(takeoverKey(vpool)).string();
  if (v === null) return null;
  const req = JSON.parse(v) as TakeoverRequest;
  return req.owner === owner.router && req.tag === owner.tag && (req.router === null || req.router === router) ? req : null;
}

/** One line per vDisk at risk, for logs and `vpoolfs takeover`. */
export function describeRisks(risks: Risk[]): string {
  return risks.map((r) => `${r.path ?? '(unknown path)'} (vDisk ${r.id}): ${r.why}`).join('; ');
}
