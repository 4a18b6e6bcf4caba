/**
 * The crc32 of clusters of a write's data computed before the data reached the volume layer (the kernel
 * FUSE engine's reader threads compute them for every WRITE they read: fuse/kernel/write-crcs.ts), so that
 * the main thread combines them into the slot headers (sco-format.ts) instead of reading 4 KiB again.
 *
 * Keyed by the request's ArrayBuffer, which the reader transferred to the main thread (no other thread sees
 * it until the main thread hands it back after the reply, and the volume layer writes nothing into a
 * caller's data): `at` is the byte offset in it of the first cluster-aligned piece of the write, `crcs[i]`
 * the crc32 of the 4 KiB at `at + i·4096`. A cluster the volume layer builds itself (a read-modify-write, a
 * zeroed tail) lives in a buffer of its own and finds nothing here. Once the buffer is handed back its views
 * are detached (length 0) and find nothing either. A WeakMap: an entry goes with its buffer.
 */
import { CLUSTER_SIZE } from '../../types.js';

const known = new WeakMap<ArrayBufferLike, { at: number; crcs: Uint32Array }>();
/** Clusters whose recorded crc was used (the kernel engine's session stats show it: a test checks the path is taken). */
let used = 0;

export function knownCrcsUsed(): number {
  return used;
}

/** Records the crcs of the clusters at `at`, `at + 4096`, … of `buffer`. */
export function noteClusterCrcs(buffer: ArrayBufferLike, at: number, crcs: Uint32Array): void {
  known.set(buffer, { at, crcs });
}

/** The crc32 of `data` if it is one of the recorded clusters (same buffer, same place), else undefined. */
export function knownClusterCrc(data: Uint8Array): number | undefined {
  const crc = peekClusterCrc(data);
  if (crc !== undefined) used++;
  return crc;
}

/** knownClusterCrc without counting it as used in a slot (the DTL bridge's entries use it too: dtl-client/bridge.ts). */
export function peekClusterCrc(data: Uint8Array): number | undefined {
  if (data.length !== CLUSTER_SIZE) return undefined;
  const e = known.get(data.buffer);
  if (e === undefined) return undefined;
  const d = data.byteOffset - e.at;
  if (d < 0 || d % CLUSTER_SIZE !== 0) return undefined;
  const i = d / CLUSTER_SIZE;
  if (i >= e.crcs.length) return undefined;
  return e.crcs[i];
}
