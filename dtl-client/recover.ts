/**
 * Recovery after a host loss: the vDisk was just rebuilt from the backend on this router; the DTL holds
 * the writes the backend lacks. Every configured server is asked for its range of the vDisk (GetSCORange);
 * the copy registered last (highest epoch) wins — an older copy on another server is what was left behind
 * by a failover. Its entries with tag > the last SCO in the backend are replayed in log order, as the
 * writes and resizes that made them, and shipped to the backend before the vDisk goes on.
 */
import { logger } from '../util/log.js';
import { keyNumber, tlogKey } from '../volume/backend-layout.js';
import { decodeRecords, RecordType } from '../volume/tlog-format.js';
import type { VDiskImpl } from '../volume/vdisk.js';
import { DtlClient, type DtlClientOptions, type RemoteRange } from './client.js';
import type { DtlError } from './errors.js';
import type { DtlEntry } from './messages.js';

const log = logger('dtl');

export async function recoverFromDtl(v: VDiskImpl, opts: DtlClientOptions): Promise<void> {
  let best: { server: string; range: RemoteRange } | null = null;
  const unreachable: string[] = [];
  for (const server of opts.servers) {
    const c = new DtlClient({ ...opts, servers: [server] });
    try {
      const range = await c.getScoRange(v.id);
      if (range.registered && (best === null || range.epoch > best.range.epoch)) best = { server, range };
    } catch (err) {
      unreachable.push(`${server} (${(err as DtlError).message})`);
    } finally {
      c.close();
    }
  }
  if (best === null || best.range.entries === 0) {
    if (best === null && unreachable.length > 0) log.error('DTL recovery: no DTL server answered; the writes that were only in the DTL are lost', { vdisk: v.id, unreachable });
    else log.info('DTL recovery: the DTL holds nothing for this vDisk', { vdisk: v.id, server: best?.server ?? null });
    return;
  }
  // the TLogs really in the backend (not the number the rebuild continues from, which snapshots may raise),
  // and the highest SCO any of them names, those a rollback dropped included: entries up to it are older
  // than the backend (a DTL that missed a rollback while degraded must not bring rolled-back writes back)
  const tlogs = (await v.ctx.backend.list(`vdisks/${v.id}/tlog/`)).map(keyNumber);
  const lastTlog = tlogs.reduce((m, n) => Math.max(m, n), 0);
  let named = v.corkedSco;
  for (const n of tlogs) {
    for (const r of decodeRecords(await v.ctx.backend.get(tlogKey(v.id, n))).records) if (r.type === RecordType.Sco) named = Math.max(named, r.sco);
  }
  const from = named + 1;
  const c = new DtlClient({ ...opts, servers: [best.server] });
  let applied = 0;
  try {
    let chain: Promise<void> = Promise.resolve();
    let skipped = 0;
    const n = await c.getEntries(v.id, from, (e: DtlEntry) => {
      // a resize whose TLog is in the backend is there already (and may be older than what follows it there)
      if (e.kind === 'resize' && e.tlog !== 0 && e.tlog <= lastTlog) {
        skipped++;
        return;
      }
      const copy: DtlEntry = e.kind === 'cluster' ? { ...e, data: Buffer.from(e.data) } : e;
      chain = chain.then(async () => {
        await v.applyDtlEntry(copy);
        applied++;
      });
    });
    await chain;
    if (n > skipped) await v.syncToBackend();
    log.info('DTL recovery: replayed the entries newer than the backend', { vdisk: v.id, server: best.server, fromSco: from, entries: n, skippedResizes: skipped, size: v.size, epoch: best.range.epoch, router: best.range.router });
  } catch (err) {
    log.error('DTL recovery failed part way; the vDisk goes on with what was replayed', { vdisk: v.id, server: best.server, applied, error: (err as Error).message });
  } finally {
    c.close();
  }
}
