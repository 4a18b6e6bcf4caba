/**
 * Bringing a vDisk up, three ways:
 *  - fresh: an empty vDisk (size 0 until resized), TLog 1 open;
 *  - local restart: the persisted (corked) map from the metadata store, then the local TLogs newer than
 *    the cork point replayed, then the SCOs written after the last TLog record scanned slot by slot (a torn
 *    tail cut) — every acknowledged write comes back;
 *  - rebuild from the backend (the local state is gone): the newest map checkpoint that fits the chain
 *    (../lineage/map-checkpoint.ts), then every TLog (or scrub segment) after it replayed in order.
 * The local state counts only when both the metadata record and the write-cache directory exist.
 */
import fs from 'node:fs';
import { logger } from '../../util/log.js';
import { scoKey, tlogKey } from '../datapath/formats/backend-layout.js';
import { FENCE_GAP, fenceKey, hasEpochFence, hasTagFence, scoCounts, tagFenceKey, tlogCounts, vdiskFences, type VDiskFence } from '../datapath/formats/epoch-fence.js';
import { LocalCache } from '../datapath/write-cache/local-cache.js';
import { checkSlot, namespaceTag, scanSlots, SLOT_SIZE } from '../datapath/formats/sco-format.js';
import { decodeRecords, RecordType, type TLogRecord } from '../datapath/formats/tlog-format.js';
import { CLUSTER_SIZE } from '../types.js';
import { VDiskImpl } from './vdisk.js';
import type { VDiskContext } from './vdisk-context.js';
import { attachDtl, dtlModeOf } from './dtl-hook.js';
import { docShippedKey, maxTlogOf, rollbackKey } from '../lineage/snapshot-store.js';
import { readItem } from '../lineage/chain.js';
import { chainStart } from '../lineage/chain-start.js';
import { lastRunKey, lastRunObjectKey, SCRUB_SCO_BASE } from '../lineage/scrub-state.js';
import { isCode } from '../../util/errors.js';
import { finishRollback, restoreOnRebuild } from './snapshot-open.js';
import { corkOps, dtlRecoveryKey, mapPrefix, metaKey, pageWords, scoCountPrefix, vdiskMdsPrefix, type VDiskMeta } from './vdisk-meta.js';

const log = logger('vdisk-open');

/** The vDisk's objects (write cache, uploader, doc store: VDiskImpl's constructor), nothing read or written yet. */
function construct(id: string, ctx: VDiskContext): VDiskImpl {
  return new VDiskImpl(id, namespaceTag(id), ctx);
}

export async function createVDisk(id: string, ctx: VDiskContext): Promise<VDiskImpl> {
  const v = construct(id, ctx);
  // a new id has no keys: the delete (a commit and its fdatasync, one in five of a create's) only when some are there
  for (const _ of ctx.mds.range(vdiskMdsPrefix(id))) {
    await ctx.mds.deletePrefix(vdiskMdsPrefix(id));
    break;
  }
  fs.rmSync(v.cache.dir, { recursive: true, force: true });
  v.cache.create(1, 1);
  const meta: VDiskMeta = { corkedTlog: 0, corkedSco: 0, size: 0, template: false };
  await ctx.mds.commit([{ key: metaKey(id), value: Buffer.from(JSON.stringify(meta)) }]);
  attachDtl(v);
  return v;
}

export async function openVDisk(id: string, ctx: VDiskContext): Promise<VDiskImpl> {
  const raw = ctx.mds.get(metaKey(id));
  const v = construct(id, ctx);
  if (ctx.mds.get(rollbackKey(id)) !== undefined) {
    await finishRollback(v); // a rollback was cut short: its doc is shipped, then the state comes from the backend
    await rebuildFromBackend(v);
  } else if (raw !== undefined && LocalCache.exists(v.cache.dir) && !(ctx.dtl !== undefined && ctx.mds.get(dtlRecoveryKey(id)) !== undefined)) {
    const fromSco = openLocal(v, JSON.parse(raw.toString()) as VDiskMeta);
    // after a power cut the write cache lacks what was never fsynced, the DTL has it (every acknowledged
    // write in sync mode): its entries from the first SCO not found whole are replayed before serving.
    // After a kill nothing is missing and that is the SCO that was open (the replay rewrites the same).
    if (ctx.dtl?.recoverLocal !== undefined && dtlModeOf(v) === 'sync') await ctx.dtl.recoverLocal(v, fromSco);
  } else {
    if (raw !== undefined && ctx.dtl !== undefined && ctx.mds.get(dtlRecoveryKey(id)) !== undefined) {
      // replaying the same log again over the backend's state (which may hold part of the first replay) is
      // idempotent: every entry overwrites whole clusters or sets the size, in log order
      log.warn('the DTL recovery of this vDisk was cut short (a crash after the rebuild): rebuilding from the backend and replaying the DTL again', { vdisk: id });
    }
    await rebuildFromBackend(v, ctx.dtl !== undefined);
    // the host was lost: the writes not in the backend come back from the DTL (never after a local restart
    // or a rollback: there the write cache, or the rollback, is newer than what the DTL holds)
    if (ctx.dtl !== undefined) {
      await ctx.dtl.recover(v);
      await ctx.mds.commit([{ key: dtlRecoveryKey(id), value: null }]);
    }
  }
  attachDtl(v); // a local restart re-ships what is not in the backend (catch-up), it replays nothing
  return v;
}

/** Returns the first SCO the restart did not find whole (its record and every slot it names sound). */
function openLocal(v: VDiskImpl, meta: VDiskMeta): number {
  const { ctx, id } = v;
  for (const [key, value] of ctx.mds.range(mapPrefix(id))) v.map.loadPage(parseInt(key.slice(key.lastIndexOf('/') + 1), 16), pageWords(value));
  for (const [key, value] of ctx.mds.range(scoCountPrefix(id))) v.scoCounts.set(parseInt(key.slice(key.lastIndexOf('/') + 1), 16), value.readUInt32LE(0));
  v.map.takeDirty();
  v.docs.loadLocal();
  v.restoreCorked(meta);
  let lastSco = meta.corkedSco;
  const named = new Set<number>(); // SCOs a local TLog record names
  const notWhole = new Set<number>(); // ...of which some slots are not on the disk
  const replay = (records: TLogRecord[]): void => {
    for (const r of records) {
      v.applyRecord(r);
      if (r.type === RecordType.Sco) {
        lastSco = Math.max(lastSco, r.sco);
        named.add(r.sco);
      }
    }
  };
  const pending: Array<{ tlog: number; scos: number[] }> = [];
  for (const tlog of v.cache.closedTlogs()) {
    if (tlog <= meta.corkedTlog) {
      v.cache.deleteClosedTlog(tlog); // in the backend already; the crash came before its removal
      continue;
    }
    let { records, error } = decodeRecords(v.cache.readClosedTlog(tlog));
    if (error !== null) {
      records = repairLocalTlog(v, tlog, records, error, lastSco);
      for (const r of records) if (r.type === RecordType.Sco) notWhole.add(r.sco); // from the SCOs as found
    }
    if (dropUnwrittenSlots(v, records, `TLog ${tlog}`, notWhole)) v.cache.rewriteClosedTlog(tlog, records.filter((r) => r.type !== RecordType.Header));
    const scos = records.filter((r) => r.type === RecordType.Sco).map((r) => (r as { sco: number }).sco);
    replay(records);
    pending.push({ tlog, scos });
  }
  const journal = v.cache.reopenJournal((records) => dropUnwrittenSlots(v, records, 'the open TLog', notWhole));
  replay(journal.records);
  // every write in a SCO before this one is in the map (SCO numbers follow the writes; a number no record
  // names lost its record, or is a gap a rebuild left, which only makes the DTL replay longer)
  let fromSco = lastSco + 1;
  for (let n = meta.corkedSco + 1; n <= lastSco; n++) {
    if (!named.has(n) || notWhole.has(n)) {
      fromSco = n;
      break;
    }
  }
  v.cache.nextSco = lastSco + 1; // never reuse a SCO number, even when every local copy was evicted
  for (const { sco, addresses } of v.cache.recoverOpenScos(lastSco)) {
    for (let i = 0; i < addresses.length; i++) if (addresses[i] >= 0) v.map.set(addresses[i], sco, i);
  }
  // a growing write records the new size after its clusters: cut short (a crash, a failed append), its
  // clusters lie past the size; they were never acknowledged and must not show if the vDisk grows later
  v.map.clearFrom(Math.ceil(v.size / CLUSTER_SIZE));
  v.countRestartedBytes();
  v.cache.adoptFoundFiles(v.corkedSco);
  for (const p of pending) v.uploader.enqueue(p);
  log.info('vDisk reopened from the local write cache', {
    vdisk: id, size: v.size, corkedTlog: meta.corkedTlog, replayedTlogs: pending.length, journalRecords: journal.records.length, firstScoNotWhole: fromSco,
  });
  return fromSco;
}

/** `dtlRecovery`: a DTL recovery follows; the rebuild's commit records it (dtlRecoveryKey) until it is done. */
/** How often a long rebuild from the backend logs how far it is. */
const REBUILD_PROGRESS_MS = 2000;

async function rebuildFromBackend(v: VDiskImpl, dtlRecovery = false): Promise<void> {
  const { ctx, id } = v;
  await ctx.mds.deletePrefix(vdiskMdsPrefix(id));
  fs.rmSync(v.cache.dir, { recursive: true, force: true });
  const restored = await restoreOnRebuild(v);
  const t0 = Date.now();
  // the late uploads of a fenced router (../datapath/formats/epoch-fence.ts) are no part of the history
  const fences = await vdiskFences(ctx.backend, id);
  // the chain: a scrub's segments in place of the TLogs it replaced (docs/scrubbing.md), then the TLogs.
  // The newest map checkpoint that fits it spares replaying the part it covers, and listing it
  // (../lineage/chain-start.ts): the time no longer grows with the vDisk's history. `listed`, `allScos`: the
  // keys after the checkpoint (`start.tlogFloor`, `start.scoFloor`), or every one without a checkpoint.
  const start = await chainStart(ctx.backend, id, v.docs.doc, fences, { load: ctx.loadCheckpoints !== false, log });
  const { found, items } = start;
  const listed = start.tlogs;
  const accepted = listed.filter((n) => tlogCounts(fences, n));
  const tlogs = accepted.filter(restored.keep);
  const allScos = start.scos;
  const scos = allScos.filter((n) => scoCounts(fences, n));
  const decoded = [];
  // a long rebuild (many TLogs, a slow backend) says how far it is every few seconds
  let lastLog = t0;
  let bytes = 0;
  if (found !== null) v.adoptCheckpoint(found.cp.state);
  for (const item of items) {
    if (item.segment) decoded.push({ tlog: item.end, records: await readItem(ctx.backend, id, item), error: null }); // damaged: CHECKSUM
    else {
      const body = await ctx.backend.get(tlogKey(id, item.end));
      bytes += body.length;
      decoded.push({ tlog: item.end, ...decodeRecords(body) });
    }
    const now = Date.now();
    if (now - lastLog >= REBUILD_PROGRESS_MS) {
      lastLog = now;
      log.info('rebuilding from the backend', { vdisk: id, doneTlogs: decoded.length, totalTlogs: items.length, bytes, bytesPerSecond: Math.round((bytes * 1000) / (now - t0)), elapsedMs: now - t0 });
    }
  }
  let lastSco = found?.cp.header.lastSco ?? 0; // the owner's own SCOs only: scrub SCOs are numbered from SCRUB_SCO_BASE
  for (let i = 0; i < decoded.length; i++) {
    const { tlog, records, error } = decoded[i];
    for (const r of records) {
      v.applyRecord(r);
      if (r.type === RecordType.Sco && r.sco < SCRUB_SCO_BASE) lastSco = Math.max(lastSco, r.sco);
    }
    if (error === null) continue;
    // A damaged TLog: its SCOs are self-describing, so take their entries from the SCOs themselves.
    const nextFirst = firstScoOf(decoded.slice(i + 1));
    const gap = scos.filter((n) => n > lastSco && n < nextFirst);
    log.error('a TLog in the backend is damaged; recovering its entries from the SCOs it covers (resizes and discards it held are lost)', {
      vdisk: id, object: tlogKey(id, tlog), reason: error, scos: gap,
    });
    for (const sco of gap) {
      const rec = scoRecordFromSlots(await ctx.backend.get(scoKey(id, sco)), v.tag, sco);
      v.applyRecord(rec);
      lastSco = Math.max(lastSco, sco);
    }
  }
  v.map.clearFrom(Math.ceil(v.size / CLUSTER_SIZE)); // clusters of a growing write that failed (see openLocal)
  // SCOs uploaded without their TLog (a crash in between) must not be overwritten: number past them
  // ...nor those a scrub's sweep deleted (numbers are never reused: a read cache may hold their pieces)
  lastSco = Math.max(lastSco, v.docs.doc.scrub?.ownScoHigh ?? 0);
  const maxSco = allScos.reduce((m, n) => Math.max(m, n), lastSco);
  // the checkpoint's own TLogs were checked against the doc and the fences: they count and are kept
  const lastTlog = Math.max(tlogs.length > 0 ? tlogs[tlogs.length - 1] : 0, start.coveredTlog, maxTlogOf(v.docs.doc));
  let firstTlog = Math.max(lastTlog, start.tlogFloor, listed.length > 0 ? listed[listed.length - 1] : 0) + 1;
  let firstSco = maxSco + 1;
  // never inside a fence's gap: a fence written by an earlier try of this takeover (or takeback) that failed
  // after it, with nothing uploaded past it since, would make every TLog and SCO numbered there count for nothing
  for (const f of fences) {
    firstTlog = Math.max(firstTlog, f.firstTlog);
    firstSco = Math.max(firstSco, f.firstSco);
  }
  const fenceTag = ctx.fenceTag?.(id);
  // an owner tag is this vDisk's own, newer change of owner: its fence covers the claim epoch's too (the filter
  // reads both kinds alike); a later rebuild in this epoch would write the epoch's, which then excludes nothing
  const byTag = fenceTag !== undefined && !hasTagFence(fences, fenceTag);
  const byEpoch = !byTag && ctx.fenceEpoch !== undefined && !hasEpochFence(fences, ctx.fenceEpoch);
  if (byEpoch || byTag) {
    // a takeover (of the vPool: a new claim epoch; or of this vDisk alone: a new owner tag): what is in the
    // backend now is the vDisk's history; anything the router we replaced uploads from now on lies in the gap
    // below our numbers and counts for nothing. In the backend before the vDisk serves anything.
    const fence: VDiskFence = {
      epoch: byEpoch ? ctx.fenceEpoch! : 0, ...(byEpoch ? {} : { tag: fenceTag }), router: ctx.routerId, at: Date.now(),
      // nothing listed past the checkpoint: what it covers is the history (numbers at or below it are taken)
      acceptedTlog: accepted.length > 0 ? accepted[accepted.length - 1] : start.tlogFloor,
      acceptedSco: scos.length > 0 ? scos[scos.length - 1] : start.scoFloor,
      firstTlog: firstTlog - 1 + FENCE_GAP,
      firstSco: firstSco - 1 + FENCE_GAP,
    };
    await ctx.backend.put(fence.tag === undefined ? fenceKey(id, fence.epoch) : tagFenceKey(id, fence.tag), Buffer.from(JSON.stringify(fence)));
    ({ firstTlog, firstSco } = fence);
    log.info('vDisk fenced for a takeover: the previous holder\'s later uploads will not count', { vdisk: id, ...fence });
  }
  if (listed.length > accepted.length) {
    log.warn('TLogs uploaded by a fenced router after a takeover are ignored', { vdisk: id, ignored: listed.filter((n) => !tlogCounts(fences, n)) });
  }
  v.corkRebuilt(lastSco, lastTlog);
  const ops = corkOps(v, { tlog: lastTlog, scos: [...v.scoCounts.keys()].sort((a, b) => a - b) });
  v.cache.create(firstTlog, firstSco);
  // a snapshot taken right after a takeover names the TLog before the new holder's first: covered too
  const boundaries = [...fences.map((f) => f.firstTlog - 1), ...(firstTlog > lastTlog + 1 ? [firstTlog - 1] : [])];
  restored.pruneSnapshots(new Set([...tlogs, start.coveredTlog, ...boundaries]));
  ops.push(...v.docs.ops(v.docs.doc), { key: docShippedKey(id), value: Buffer.from(String(v.docs.shippedGen)) });
  if (dtlRecovery) ops.push({ key: dtlRecoveryKey(id), value: Buffer.from('1') });
  // how the last scrub ended (user.vdisk.info), from its copy in the backend (docs/scrubbing.md)
  const lastRun = await ctx.backend.get(lastRunObjectKey(id)).catch((err: unknown) => (isCode(err, 'NOT_FOUND') ? null : Promise.reject(err)));
  if (lastRun !== null) ops.push({ key: lastRunKey(id), value: lastRun });
  await ctx.mds.commit(ops);
  v.checkpoints.noteTlogs(items.length); // many replayed: the next checkpoint is due now
  log.info('vDisk rebuilt from the backend', {
    vdisk: id, size: v.size, tlogs: tlogs.length, scos: v.scoCounts.size, bytes, ms: Date.now() - t0,
    checkpoint: found?.key ?? null, replayedItems: items.length, chainItems: start.covered + items.length,
    listedTlogs: listed.length, listedScos: allScos.length,
  });
}

/**
 * A closed TLog in the write cache is damaged: keep its sound records, take the entries of the SCOs after
 * them from the SCO files themselves (self-describing), and write the TLog again so that what is uploaded
 * is whole. Resize and discard records in the damaged part are lost (logged).
 */
function repairLocalTlog(v: VDiskImpl, tlog: number, records: TLogRecord[], error: string, lastSco: number): TLogRecord[] {
  let from = lastSco;
  for (const r of records) if (r.type === RecordType.Sco) from = Math.max(from, r.sco);
  const later = v.cache.closedTlogs().filter((n) => n > tlog);
  let until = Infinity;
  for (const n of later) {
    const first = firstScoOf([decodeRecords(v.cache.readClosedTlog(n))]);
    if (first !== Infinity) {
      until = first;
      break;
    }
  }
  if (until === Infinity) until = firstScoOf([{ records: decodeRecords(v.cache.readOpenTlog()).records }]);
  const gap = v.cache.localScos().filter((n) => n > from && n < until);
  // with no later record to bound it, the SCOs written since count too: they become part of this TLog
  const fixed: TLogRecord[] = records.filter((r) => r.type !== RecordType.Header);
  for (const sco of gap) fixed.push(scoRecordFromSlots(fs.readFileSync(v.cache.scoPath(sco)), v.tag, sco));
  v.cache.rewriteClosedTlog(tlog, fixed);
  log.error('a closed TLog in the write cache was damaged; rebuilt it from its sound records and the SCOs it covered (resizes and discards it held are lost)', {
    vdisk: v.id, tlog, reason: error, scos: gap,
  });
  return fixed;
}

/**
 * Local restart after a power cut: a SCO's record is appended to the open TLog with write(2) when the SCO
 * closes, and the kernel may write the TLog's page back before the SCO's pages, so a record can name slots
 * that never reached the disk. No local TLog is corked, and nothing says a completed sync covered its
 * records, so each slot they name is checked (header, checksum of header and data, namespace, SCO, slot,
 * address): one that is not sound maps nothing (address -1) and the cluster keeps its previous mapping —
 * old content, which DESIGN §4 allows for a write after the last fsync. A slot a completed fsync covered is
 * sound, so nothing acknowledged before it is dropped. Changes `records` in place; true if it changed any.
 */
function dropUnwrittenSlots(v: VDiskImpl, records: TLogRecord[], where: string, notWhole: Set<number>): boolean {
  let changed = false;
  for (let k = 0; k < records.length; k++) {
    const r = records[k];
    if (r.type !== RecordType.Sco || r.sco <= v.corkedSco) continue; // corked: its SCO is in the backend
    let buf: Buffer;
    try {
      buf = fs.readFileSync(v.cache.scoPath(r.sco));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      buf = Buffer.alloc(0); // its creation never reached the disk
    }
    const dropped: number[] = [];
    const reasons: Record<string, number> = {};
    for (let i = 0; i < r.count; i++) {
      if (r.addresses[i] < 0) continue;
      const why = checkSlot(buf, i * SLOT_SIZE, v.tag, r.sco, i, r.addresses[i]);
      if (why === null) continue;
      reasons[why] = (reasons[why] ?? 0) + 1;
      dropped.push(i);
      r.addresses[i] = -1;
    }
    if (dropped.length === 0) continue;
    changed = true;
    notWhole.add(r.sco);
    // the count ends after the last sound slot: a read from the backend fetches that many slots, and the
    // SCO file may end before the dropped ones. None left: the record goes (the SCO counts as never closed)
    let count = r.count;
    while (count > 0 && r.addresses[count - 1] < 0) count--;
    if (count === 0) records.splice(k--, 1);
    else records[k] = { ...r, count, addresses: r.addresses.slice(0, count) };
    log.warn('a SCO record names slots that are not on the disk (a power cut before the SCO was synced): those clusters keep their previous content', {
      vdisk: v.id, tlog: where, sco: r.sco, slots: r.count, dropped: dropped.length, firstDropped: dropped.slice(0, 8), reasons,
    });
  }
  return changed;
}

function firstScoOf(later: Array<{ records: TLogRecord[] }>): number {
  for (const d of later) for (const r of d.records) if (r.type === RecordType.Sco) return r.sco;
  return Infinity;
}

/** The entries of a SCO read from its slot headers (each verified by its own checksum, see scanSlots). */
function scoRecordFromSlots(buf: Buffer, tag: number, sco: number): TLogRecord {
  const { addresses, count } = scanSlots(buf, tag, sco);
  return { type: RecordType.Sco, sco, count, crc: 0, addresses };
}
