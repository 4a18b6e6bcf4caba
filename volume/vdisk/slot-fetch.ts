/**
 * Reading a vDisk's own slots with their checks (the read path's SlotSource.fetchSlots, volume/vdisk/vdisk.ts):
 * from the write cache if the SCO is there, else from the read cache / backend. A damaged slot in the write
 * cache is taken from the backend copy when the SCO is there too, and the local copy mended; a damaged
 * slot from the backend is fetched once more, then is a CHECKSUM error.
 */
import { VolumeError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import type { LocalCache } from '../datapath/write-cache/local-cache.js';
import { checkSlot, SLOT_SIZE } from '../datapath/formats/sco-format.js';
import { CLUSTER_SIZE } from '../types.js';
import type { VDiskContext } from './vdisk-context.js';

// the vDisk's logger: these lines are the vDisk's, as they were when this code was in vdisk.ts
const log = logger('vdisk');

/** What reading slots needs of a vDisk (VDiskImpl). */
export interface SlotOwner {
  readonly id: string;
  readonly tag: number;
  readonly corkedSco: number;
  readonly scoCounts: ReadonlyMap<number, number>;
  readonly cache: LocalCache;
  readonly ctx: VDiskContext;
  /** The backend key of SCO `sco` (its own, or a scrub's). */
  scoKeyOf(sco: number): string;
}

/** `n` verified slots for clusters a..a+n-1, stored in SCO `sco` from `slot` (of `v`'s namespace). */
export async function fetchVerifiedSlots(v: SlotOwner, a: number, sco: number, slot: number, n: number): Promise<Buffer> {
  const local = v.cache.readSlots(sco, slot, n);
  if (local === null) return fetchRemote(v, a, sco, slot, n, false);
  const bad = verify(v, local, a, sco, slot, n);
  if (bad === null) return local;
  if (sco > v.corkedSco) throw checksumError(v, a + bad.k, sco, slot + bad.k, 'write cache', bad.reason);
  // the SCO is in the backend too: take each damaged slot from there, and mend the local copy
  log.error('a SCO in the write cache is damaged; reading the damaged slots from the backend copy', {
    vdisk: v.id, sco, slot: slot + bad.k, reason: bad.reason, file: v.cache.scoPath(sco),
  });
  const remote = await fetchRemote(v, a, sco, slot, n, true);
  for (let k = bad.k; k < n; k++) {
    const pos = k * SLOT_SIZE;
    if (checkSlot(local, pos, v.tag, sco, slot + k, a + k) === null) continue;
    const why = checkSlot(remote, pos, v.tag, sco, slot + k, a + k);
    if (why !== null) throw checksumError(v, a + k, sco, slot + k, 'write cache and the backend', why);
    remote.copy(local, pos, pos, pos + SLOT_SIZE);
    v.cache.repairSlot(sco, slot + k, remote.subarray(pos, pos + SLOT_SIZE));
  }
  return local;
}

/** The slots from the read cache / backend; verified unless `anyway` (the caller checks each slot). */
async function fetchRemote(v: SlotOwner, a: number, sco: number, slot: number, n: number, anyway: boolean): Promise<Buffer> {
  const key = v.scoKeyOf(sco);
  const count = v.scoCounts.get(sco);
  if (count === undefined) throw checksumError(v, a, sco, slot, 'backend', 'SCO unknown to this vDisk');
  for (let attempt = 0; ; attempt++) {
    let remote: Buffer;
    try {
      remote = await v.ctx.readCache.getSlots(key, count, slot, n);
    } catch (err) {
      throw new VolumeError('BACKEND', `reading SCO ${sco} from the backend failed: ${(err as Error).message}`, { vdisk: v.id, sco }, { cause: err });
    }
    const bad = verify(v, remote, a, sco, slot, n);
    if (bad === null) return remote;
    v.ctx.readCache.invalidate(key, slot + bad.k);
    if (attempt > 0) {
      if (anyway) return remote;
      throw checksumError(v, a + bad.k, sco, slot + bad.k, 'backend', bad.reason);
    }
  }
}

function verify(v: SlotOwner, buf: Buffer, a: number, sco: number, slot: number, n: number): { k: number; reason: string } | null {
  for (let k = 0; k < n; k++) {
    const reason = checkSlot(buf, k * SLOT_SIZE, v.tag, sco, slot + k, a + k);
    if (reason !== null) return { k, reason };
  }
  return null;
}

function checksumError(v: SlotOwner, a: number, sco: number, slot: number, where: string, reason: string): VolumeError {
  const ctx = { vdisk: v.id, offset: a * CLUSTER_SIZE, sco, slot, object: where === 'backend' ? v.scoKeyOf(sco) : v.cache.scoPath(sco), reason };
  log.error(`checksum error reading from the ${where}`, ctx);
  return new VolumeError('CHECKSUM', `data at offset ${a * CLUSTER_SIZE} failed its checksum (${reason}) in the ${where}`, ctx);
}
