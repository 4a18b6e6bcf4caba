/**
 * Recovery after a host loss: the vDisk was just rebuilt from the backend on this router; the DTL holds
 * the writes (and discards) the backend lacks. Every configured server is asked for its range of the vDisk (GetSCORange)
 * — those of routers whose registry lease expired only when no other one holds it (Reachability, below);
 * the copy registered last (highest epoch) wins — an older copy on another server is what was left behind
 * by a failover. Its entries with tag > the last SCO in the backend are replayed in log order, as the
 * writes and resizes that made them, and shipped to the backend before the vDisk goes on.
 *
 * A server that hands out something wrong (a damaged frame or entry, tags out of order: client.ts; a
 * cluster that is not a whole cluster or lies past the vDisk's size at that point of the log, a size over
 * the maximum: here) ends the replay there: what came before it is a prefix of the log and is kept and
 * shipped; nothing after it is applied. Logged, never thrown.
 *
 * Fencing (fence.ts): every server asked is first sent a Fence with this router's owner (v.dtlOwner()), before its
 * range is read: from then on that server refuses the older owner's changes of the vDisk (FENCED), so a router
 * that lost the vDisk without knowing it gets no more write acknowledged through it. A server this recovery does
 * not ask (not listed, skipped, unreachable) is not fenced. A Fence refused as older than the server's fence
 * means this router is the stale one: the vDisk is fenced here (v.fenceByDtl).
 */
import { logger } from '../util/log.js';
import { backendTlogs, tlogKey } from '../volume/datapath/formats/backend-layout.js';
import { CLUSTER_SIZE, MAX_VDISK_SIZE } from '../volume/types.js';
import { decodeRecords, RecordType } from '../volume/datapath/formats/tlog-format.js';
import type { DtlVDisk } from '../volume/vdisk/dtl-sink.js';
import { DtlClient, type DtlClientOptions, type RemoteRange } from './client.js';
import { DtlError } from './errors.js';
import type { DtlEntry } from './messages.js';

const log = logger('dtl');

/** How long the recovery waits for the registry's word on which servers went with a dead router. */
export const GONE_LOOKUP_MS = 2000;

/** Connection attempts of recoveries per server, since the process started (tests and the logs read it). */
export const recoveryAttempts = new Map<string, number>();

/**
 * The servers found unreachable (no connection, or no answer within the client's timeout) by the recoveries
 * of one vPool's vDisks (one per DtlProvider: the mount's), skipped by the next ones for `forMs` after: a
 * takeover after a host loss recovers each vDisk in turn, and a black-holed server asked again would cost each
 * one the DTL client's timeout (5 s: minutes at a few dozen vDisks). After `forMs` it is asked again (once,
 * then skipped again if still silent). What skipping gives up: a server that comes back within `forMs` is not
 * asked for the vDisks recovered meanwhile — those it alone held are logged as lost, as they would be had it
 * stayed away; a write acknowledged in sync mode is on the server the vDisk was registered with, reachable or not.
 *
 * `gone` (with a registry: tools/daemon/dtl-registry.ts): the servers on the address of routers whose registry
 * lease has expired — gone with their host, or cut off with it — and why. Those are not asked at first, so that
 * not even the first vDisk pays a timeout for them; they are asked only for a vDisk no other server holds (the
 * router may have died alone, its host's DTL server still answering). Looked up at most once a second.
 */
export class Reachability {
  private readonly down = new Map<string, number>();
  private goneAt = 0;
  private goneNow: Promise<Map<string, string>> | null = null;

  constructor(private readonly forMs = 30_000, private readonly lookup?: (servers: string[]) => Promise<Map<string, string>>) {}

  failed(server: string): void {
    this.down.set(server, Date.now());
  }

  /** The servers of `servers` to skip now. */
  skipping(servers: string[]): string[] {
    const now = Date.now();
    return servers.filter((s) => {
      const at = this.down.get(s);
      if (at !== undefined && now - at >= this.forMs) this.down.delete(s);
      return at !== undefined && now - at < this.forMs;
    });
  }

  ago(server: string): number {
    return Date.now() - (this.down.get(server) ?? Date.now());
  }

  /** The servers of `servers` whose routers are gone, and why (empty without a registry, or when it does not answer). */
  async gone(servers: string[]): Promise<Map<string, string>> {
    if (this.lookup === undefined) return new Map();
    if (this.goneNow === null || Date.now() - this.goneAt >= 1000) {
      this.goneAt = Date.now();
      // a registry that does not answer within GONE_LOOKUP_MS gives nothing: every server is asked, as without one
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<Map<string, string>>((resolve) => { timer = setTimeout(() => resolve(new Map()), GONE_LOOKUP_MS).unref(); });
      this.goneNow = Promise.race([this.lookup([...servers]).catch(() => new Map<string, string>()), late]).finally(() => clearTimeout(timer));
    }
    const all = await this.goneNow;
    return new Map([...all].filter(([s]) => servers.includes(s)));
  }
}

/**
 * `localFrom`: a local restart (after a power cut the write cache lacks what was never fsynced, the DTL has
 * it): the entries with tag >= `localFrom` are replayed over the local state (corked up to v.corkedSco and
 * v.corkedTlog) and synced locally; the backend is neither read nor waited for.
 */
export async function recoverFromDtl(v: DtlVDisk, opts: DtlClientOptions, localFrom?: number, reach?: Reachability): Promise<void> {
  const local = localFrom !== undefined;
  // (assigned in ask(): a cast keeps the compiler from narrowing it to null)
  let best = null as { server: string; range: RemoteRange } | null;
  const unreachable: string[] = [];
  // every configured server at once: a black-holed one costs one timeout for this vDisk, not one per server in
  // front of the live ones; one found unreachable by an earlier vDisk of this recovery is not asked again for
  // a while (Reachability): asked, it would cost every vDisk the timeout, and could only time out again
  const notAsked = reach?.skipping(opts.servers) ?? [];
  // the servers of routers whose registry lease expired are asked only when no other one holds the vDisk
  const gone = await reach?.gone(opts.servers) ?? new Map<string, string>();
  const asked: string[] = [];
  const ask = async (servers: string[]): Promise<void> => {
    asked.push(...servers);
    const answers = await Promise.all(servers.map(async (server) => {
      recoveryAttempts.set(server, (recoveryAttempts.get(server) ?? 0) + 1);
      const c = new DtlClient({ ...opts, servers: [server] });
      try {
        await fenceAt(c, v, server);
        return { server, range: await c.getScoRange(v.id) };
      } catch (err) {
        const e = err as DtlError;
        if (e.code === 'UNREACHABLE' || e.code === 'TIMEOUT') reach?.failed(server);
        return { server, error: e.message };
      } finally {
        c.close();
      }
    }));
    for (const a of answers) {
      if ('error' in a) unreachable.push(`${a.server} (${a.error})`);
      else if (a.range.registered && (best === null || a.range.epoch > best.range.epoch)) best = { server: a.server, range: a.range };
    }
  };
  await ask(opts.servers.filter((s) => !notAsked.includes(s) && !gone.has(s)));
  const last = opts.servers.filter((s) => !notAsked.includes(s) && gone.has(s));
  if (best === null && last.length > 0) {
    log.warn('DTL recovery: no DTL server of a live router holds this vDisk; asking those of routers whose registry lease has expired', { vdisk: v.id, servers: last });
    await ask(last);
  }
  for (const s of notAsked) unreachable.push(`${s} (not asked: unreachable for another vDisk of this recovery ${reach!.ago(s)} ms ago)`);
  const goneSkipped = [...gone].filter(([s]) => !asked.includes(s)).map(([s, why]) => `${s} (not asked: ${why})`);
  if (best === null || best.range.entries === 0) {
    if (best === null && unreachable.length > 0 && local) log.warn('DTL recovery after a local restart: no DTL server answered; going on with the write cache as found (after a power cut, the writes after the last fsync may be lost)', { vdisk: v.id, fromSco: localFrom, unreachable, asked, notAsked: goneSkipped });
    else if (best === null && unreachable.length > 0) log.error('DTL recovery: no DTL server answered; the writes that were only in the DTL are lost', { vdisk: v.id, unreachable, asked, notAsked: goneSkipped });
    else log.info('DTL recovery: the DTL holds nothing for this vDisk', { vdisk: v.id, server: best?.server ?? null, asked, notAsked: goneSkipped });
    return;
  }
  // the TLogs really in the backend (not the number the rebuild continues from, which snapshots may raise),
  // and the highest SCO any of them names, those a rollback dropped included: entries up to it are older
  // than the backend (a DTL that missed a rollback while degraded must not bring rolled-back writes back)
  let lastTlog = v.corkedTlog;
  let from = Math.max(localFrom ?? 0, v.corkedSco + 1);
  if (!local) {
    const tlogs = await backendTlogs(v.ctx.backend, v.id);
    // a scrub's segments stand for the TLogs up to its horizon (their objects may be swept: docs/scrubbing.md)
    lastTlog = tlogs.reduce((m, n) => Math.max(m, n), v.docs.doc.scrub?.upTo ?? 0);
    let named = v.corkedSco;
    for (const n of tlogs) {
      for (const r of decodeRecords(await v.ctx.backend.get(tlogKey(v.id, n))).records) if (r.type === RecordType.Sco) named = Math.max(named, r.sco);
    }
    from = named + 1;
  }
  const c = new DtlClient({ ...opts, servers: [best.server] });
  let applied = 0;
  let skipped = 0;
  let n = 0;
  // the entries are applied in order, one after the other, behind the stream; the first that fails stops the
  // rest. Those queued before the stream broke are applied: they came in sound frames, a prefix of the log.
  let chain: Promise<void> = Promise.resolve();
  let failure: Error | null = null;
  let applyFailure: Error | null = null;
  let size = v.size; // the vDisk's size at this point of the log (the entries queued so far applied)
  // local: the k-th cluster entry of tag s is slot k of SCO s (both in placement order). An entry older than
  // the write the local map holds for its cluster (sound, read at the cluster's first entry, before the
  // replay touched it) is skipped: it would undo a newer write (an entry lost while the DTL was degraded)
  const perTag = new Map<number, number>();
  const localAt = new Map<number, number>(); // address -> sco * 2^16 + slot (-1: nothing newer locally)
  const replayed = new Set<number>(); // local: addresses a replayed cluster entry wrote (older than what follows)
  let older = 0;
  try {
    n = await c.getEntries(v.id, from, (e: DtlEntry) => {
      // a resize or a discard whose TLog is in the backend is there already (and may be older than what
      // follows it there: replayed again, a discard would clear a later write of the backend)
      if ((e.kind === 'resize' || e.kind === 'discard') && e.tlog !== 0 && e.tlog <= lastTlog) {
        skipped++;
        return;
      }
      if (applyFailure !== null) throw applyFailure;
      if (local && e.kind === 'cluster') {
        const k = perTag.get(e.tag) ?? 0;
        perTag.set(e.tag, k + 1);
        let at = localAt.get(e.address);
        if (at === undefined) {
          const loc = v.map.get(e.address);
          at = loc === null || loc.depth !== 0 ? -1 : loc.sco * 65536 + loc.slot;
          localAt.set(e.address, at);
        }
        if (e.tag * 65536 + k < at) {
          older++;
          return;
        }
      }
      const bad = badEntry(e, size);
      if (bad !== null) throw new DtlError('PROTOCOL', `an impossible entry from the server: ${bad}`);
      if (e.kind === 'resize') size = e.size;
      const copy: DtlEntry = e.kind === 'cluster' ? { ...e, data: Buffer.from(e.data) } : e;
      // local: a discard leaves the clusters whose local write came after it (at or past its place in the log)
      const at = e.kind === 'discard' ? e.tag * 65536 + (perTag.get(e.tag) ?? 0) : 0;
      const keep = local && e.kind === 'discard' ? (a: number) => {
        if (replayed.has(a)) return false;
        const loc = v.map.get(a);
        return loc !== null && loc.depth === 0 && loc.sco * 65536 + loc.slot >= at;
      } : undefined;
      chain = chain.then(async () => {
        if (applyFailure !== null) return;
        try {
          await v.applyDtlEntry(copy, keep);
          if (local && copy.kind === 'cluster') replayed.add(copy.address);
          applied++;
        } catch (err) {
          applyFailure = err as Error;
        }
      });
    });
  } catch (err) {
    failure ??= err as Error;
  } finally {
    c.close();
  }
  await chain; // never rejects; and nothing of the replay goes on after this returns
  failure ??= applyFailure;
  try {
    if (applied > 0) await (local ? v.sync() : v.syncToBackend());
  } catch (err) {
    failure ??= err as Error;
  }
  if (failure !== null) {
    log.error('DTL recovery failed part way; the vDisk goes on with what was replayed', { vdisk: v.id, local, server: best.server, fromSco: from, applied, error: failure.message, asked, notAsked: goneSkipped });
  } else {
    log.info(local ? 'DTL recovery after a local restart: replayed the entries the write cache did not hold whole' : 'DTL recovery: replayed the entries newer than the backend',
      { vdisk: v.id, server: best.server, fromSco: from, entries: n, skippedResizes: skipped, olderThanLocal: older, size: v.size, epoch: best.range.epoch, router: best.range.router, asked, notAsked: goneSkipped, unreachable });
  }
}

/** Sends the Fence of this router's owner of `v` to `server` (see the header); only FENCED is passed on (after fencing `v`). */
async function fenceAt(c: DtlClient, v: DtlVDisk, server: string): Promise<void> {
  const owner = v.dtlOwner();
  if (owner.tag === 0 && owner.claim === 0) return;
  await c.connect(); // no connection: as for the range (unreachable, the server is skipped for a while)
  try {
    await c.fence(v.id, owner);
  } catch (err) {
    const e = err as DtlError;
    if (e.code === 'FENCED') {
      v.fenceByDtl(e.message);
      return;
    }
    if (e.code === 'TIMEOUT') throw e; // a black-holed server: asked for the range too it would cost a second timeout
    // a server from before fencing drops the connection on the unknown message: its range is still read (reconnected)
    log.warn('DTL recovery: could not fence the older owner at this server; a router that lost the vDisk without knowing it may still get writes acknowledged through it', { vdisk: v.id, server, owner, error: e.message });
  }
}

/** Why entry `e` cannot be in a sound log when the vDisk is `size` bytes at that point (null: it can). */
function badEntry(e: DtlEntry, size: number): string | null {
  if (e.kind === 'resize') return e.size > MAX_VDISK_SIZE ? `a resize to ${e.size} bytes, over the maximum of ${MAX_VDISK_SIZE}` : null;
  if (e.kind === 'discard') {
    return (e.first + e.count) * CLUSTER_SIZE > Math.ceil(size / CLUSTER_SIZE) * CLUSTER_SIZE ? `a discard of clusters ${e.first}+${e.count} past the end of the vDisk (${size} bytes)` : null;
  }
  if (e.data.length !== CLUSTER_SIZE) return `a cluster of ${e.data.length} bytes`;
  // a write grows the vDisk first (its resize entry comes before its clusters)
  if (e.address * CLUSTER_SIZE >= size) return `cluster ${e.address} past the end of the vDisk (${size} bytes)`;
  return null;
}
