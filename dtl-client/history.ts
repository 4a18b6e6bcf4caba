/**
 * A vDisk's history not yet in the backend, read back from its write cache: the records of its local
 * TLogs after the cork point (closed ones, then the open journal) and the slots of the open SCO, in log
 * order, as DTL entries. A bridge ships it when it (re)attaches — after a local restart, a failover, a
 * mode change or an outage — so the DTL again holds exactly what the backend lacks, in the order it
 * happened, with the tags the live entries would have had.
 */
import { logger } from '../util/log.js';
import { checkSlot, SLOT_HEADER, SLOT_SIZE, slotAddress } from '../volume/datapath/formats/sco-format.js';
import { decodeRecords, RecordType, type TLogRecord } from '../volume/datapath/formats/tlog-format.js';
import type { DtlVDisk } from '../volume/vdisk/dtl-sink.js';
import { encodeDiscard, encodeEntry, encodeResize } from './messages.js';

const log = logger('dtl');

export type HistoryItem =
  | { kind: 'resize'; size: number; tag: number; tlog: number }
  | { kind: 'discard'; first: number; count: number; tag: number; tlog: number }
  | { kind: 'sco'; sco: number; count: number };

/** Call under the vDisk's lock: what happened since the cork point, in order (no data read yet). */
export function captureHistory(v: DtlVDisk): HistoryItem[] {
  const items: HistoryItem[] = [];
  const add = (records: TLogRecord[], tlog: number) => {
    for (const r of records) {
      if (r.type === RecordType.Sco) items.push({ kind: 'sco', sco: r.sco, count: r.count });
      else if (r.type === RecordType.Resize) items.push({ kind: 'resize', size: r.size, tag: 0, tlog });
      else if (r.type === RecordType.Discard) items.push({ kind: 'discard', first: r.first, count: r.count, tag: 0, tlog });
    }
  };
  for (const tlog of v.cache.closedTlogs()) if (tlog > v.corkedTlog) add(decodeRecords(v.cache.readClosedTlog(tlog)).records, tlog);
  add(decodeRecords(v.cache.readOpenTlog()).records, v.cache.openTlogNumber);
  const open = v.cache.openScoNumber;
  const openSlots = v.cache.openScoBytes / SLOT_SIZE;
  if (open !== 0 && openSlots > 0) items.push({ kind: 'sco', sco: open, count: openSlots });
  // a resize or a discard is tagged with the SCO open (or next) when it happened: the next SCO in the log after it
  let next = open !== 0 ? open : v.cache.nextSco;
  for (let i = items.length - 1; i >= 0; i--) {
    const it = items[i];
    if (it.kind === 'sco') next = it.sco;
    else it.tag = next;
  }
  return items;
}

/** The entries of `items`, in batches of about `batchBytes`. A SCO evicted meanwhile is in the backend: skipped. */
export function* historyEntries(v: DtlVDisk, items: HistoryItem[], batchBytes: number): Generator<Buffer[]> {
  let batch: Buffer[] = [];
  let bytes = 0;
  const push = (b: Buffer) => {
    batch.push(b);
    bytes += b.length;
  };
  for (const it of items) {
    if (it.kind === 'resize') {
      push(encodeResize(it.tag, it.size, it.tlog));
    } else if (it.kind === 'discard') {
      push(encodeDiscard(it.tag, it.first, it.count, it.tlog));
    } else {
      const buf = v.cache.readSlots(it.sco, 0, it.count);
      if (buf === null) continue;
      for (let i = 0; i < it.count; i++) {
        const pos = i * SLOT_SIZE;
        const bad = checkSlot(buf, pos, v.tag, it.sco, i, -1);
        if (bad !== null) {
          if (it.sco > v.corkedSco) log.error('a damaged slot in the write cache is not shipped to the DTL', { vdisk: v.id, sco: it.sco, slot: i, reason: bad });
          continue;
        }
        push(encodeEntry(0, it.sco, slotAddress(buf, pos), buf.subarray(pos + SLOT_HEADER, pos + SLOT_SIZE)));
        if (bytes >= batchBytes) {
          yield batch;
          batch = [];
          bytes = 0;
        }
      }
    }
  }
  if (batch.length > 0) yield batch;
}
