/**
 * Finding and writing map checkpoints (./map-checkpoint.ts), from the backend alone:
 *  - newestCheckpoint: the newest checkpoint of a vDisk that fits a whole chain, listed and hashed (the
 *    reference the tests hold ./chain-start.ts to; a rebuild uses chainStart, which lists only after it);
 *  - writeCheckpoint: the state as of the chain's item ending at TLog `upTo` — the newest fitting checkpoint
 *    (chainStart, or the clone base, or nothing) and the chain items after it, read back from the backend — written as
 *    a new checkpoint; then the older ones go except the one it started from (a fallback while a rollback
 *    invalidates only the newest). Derived from the backend's objects by the same rule as every replay
 *    (applyTo), never from the owner's live map (which holds writes not in the backend yet).
 */
import type { Logger } from '../../util/log.js';
import type { BlobStore } from '../backend/types.js';
import { keyNumber } from '../datapath/formats/backend-layout.js';
import { ClusterMap } from '../datapath/formats/cluster-map.js';
import { vdiskFences } from '../datapath/formats/epoch-fence.js';
import { RecordType } from '../datapath/formats/tlog-format.js';
import { applyTo, baseKey, decodeBaseInto, type DiskState } from './clone-base.js';
import { readItem, type ChainDoc, type ChainItem } from './chain.js';
import { chainStart, readCheckpoint } from './chain-start.js';
import {
  chainHashAfter, chainHashes, checkpointKey, checkpointPrefix, describeAfter, encodeCheckpoint, mismatch, type FoundCheckpoint,
} from './map-checkpoint.js';
import { SCRUB_SCO_BASE } from './scrub-state.js';

export type { FoundCheckpoint };

/**
 * The newest checkpoint of vDisk `id` that covers a prefix of `items` (its chain under `doc`), or null.
 * Those that do not fit or are not sound are skipped, and said why.
 */
export async function newestCheckpoint(backend: BlobStore, id: string, doc: ChainDoc, items: readonly ChainItem[], log: Logger): Promise<FoundCheckpoint | null> {
  const keys = await backend.list(checkpointPrefix(id));
  if (keys.length === 0 || items.length === 0) return null;
  const ends = new Set(items.map((i) => i.end));
  let hashes: string[] | null = null;
  for (const key of [...keys].reverse()) {
    if (!ends.has(keyNumber(key))) {
      log.info('a map checkpoint ends at a TLog the chain no longer has: ignored', { vdisk: id, object: key });
      continue;
    }
    const cp = await readCheckpoint(backend, id, key, log);
    if (cp === null) continue;
    hashes ??= chainHashes(id, items);
    const why = mismatch(cp.header, id, doc, items, hashes);
    if (why !== null) {
      log.info('a map checkpoint does not fit the chain: ignored', { vdisk: id, object: key, reason: why });
      continue;
    }
    return { key, cp };
  }
  return null;
}

export interface CheckpointWritten {
  key: string;
  /** Chain items it covers, and of those read from the backend for it (the rest came from an older checkpoint). */
  items: number;
  replayed: number;
  bytes: number;
  ms: number;
}

/**
 * Writes the checkpoint of vDisk `id` as of its chain (under `doc`) up to TLog `upTo`; null when the newest
 * checkpoint covers that already or there is nothing. A damaged chain item is a CHECKSUM error: nothing is
 * written past it (the rebuild's own repair handles it).
 */
export async function writeCheckpoint(backend: BlobStore, id: string, doc: ChainDoc, upTo: number,
  opts: { router: string; log: Logger; cancelled?: () => boolean }): Promise<CheckpointWritten | null> {
  const t0 = Date.now();
  const fences = await vdiskFences(backend, id);
  // the newest fitting checkpoint and only the chain items after it, as a rebuild finds them
  // (./chain-start.ts): no listing nor hashing of the whole history for each checkpoint
  const start = await chainStart(backend, id, doc, fences, { load: true, log: opts.log });
  const found = start.found;
  const after = start.items.filter((i) => i.end <= upTo);
  if (after.length === 0) return null; // nothing, or the newest checkpoint covers it all already
  let s: DiskState = { map: new ClusterMap(), size: 0, scoCounts: new Map() };
  let lastSco = 0;
  if (found !== null) {
    s = found.cp.state;
    lastSco = found.cp.header.lastSco;
  } else if (doc.parent !== null) {
    decodeBaseInto(await backend.get(baseKey(id)), s, baseKey(id));
  }
  let bytes = 0;
  for (const item of after) {
    const records = await readItem(backend, id, item);
    for (const r of records) {
      applyTo(s, r);
      if (r.type === RecordType.Sco) {
        if (r.sco < SCRUB_SCO_BASE) lastSco = Math.max(lastSco, r.sco);
        bytes += r.count * 4;
      }
    }
  }
  const header = {
    version: 1 as const, vdisk: id, ...describeAfter(doc, found?.cp.header ?? null, after),
    chainHash: chainHashAfter(found?.cp.header.chainHash ?? chainHashes(id, [])[0], after),
    parent: doc.parent?.uuid ?? null, size: s.size, lastSco, fenceEpochs: fences.map((f) => f.epoch), router: opts.router, at: Date.now(),
  };
  const key = checkpointKey(id, header.lastEnd);
  if (opts.cancelled?.() === true) return null; // the vDisk is closing or being removed
  await backend.put(key, encodeCheckpoint(header, s));
  // the older ones go, but the one this started from stays (a rollback past the new one leaves it valid)
  for (const old of await backend.list(checkpointPrefix(id))) {
    if (old !== key && old !== found?.key) await backend.delete(old);
  }
  return { key, items: header.items, replayed: after.length, bytes, ms: Date.now() - t0 };
}
