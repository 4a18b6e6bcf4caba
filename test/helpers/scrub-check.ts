/**
 * Backend-only views of a vDisk for the scrubbing tests: the data every point of its chain shows (read
 * slot by slot from the backend and verified, through whichever namespace and scrub key each entry names),
 * and the bytes of its objects. Independent of the owner's read path, so a test can check a scrub's
 * result before (or without) any vPool applying it.
 */
import type { BlobStore } from '../../volume/backend/types.js';
import { checkSlot, namespaceTag, SLOT_HEADER, SLOT_SIZE } from '../../volume/datapath/formats/sco-format.js';
import { backendDoc, stateAt, type ChainDoc } from '../../volume/lineage/chain.js';
import { scoKeyIn } from '../../volume/lineage/scrub-state.js';

export interface PointData {
  size: number;
  clusters: Map<number, Buffer>;
}

/** What vDisk `id` shows at TLog `upTo` (Infinity: its head) according to `doc`, from the backend alone. */
export async function pointData(backend: BlobStore, id: string, doc: ChainDoc, upTo = Infinity): Promise<PointData> {
  const s = await stateAt(backend, id, doc, upTo);
  const docs = new Map<string, ChainDoc | null>([[id, doc]]);
  const clusters = new Map<number, Buffer>();
  for (const [a, loc] of s.map.entries()) {
    const ns = loc.depth === 0 ? id : doc.ancestors[loc.depth - 1];
    if (!docs.has(ns)) docs.set(ns, await backendDoc(backend, ns));
    const key = scoKeyIn(ns, docs.get(ns)?.scrub?.scoRanges, loc.sco);
    const buf = await backend.getRange(key, loc.slot * SLOT_SIZE, SLOT_SIZE);
    const why = checkSlot(buf, 0, namespaceTag(ns), loc.sco, loc.slot, a);
    if (why !== null) throw new Error(`vDisk ${id} cluster ${a} at ${key} slot ${loc.slot}: ${why}`);
    clusters.set(a, buf.subarray(SLOT_HEADER));
  }
  return { size: s.size, clusters };
}

/** Every point of `doc`: its snapshots (by name) and the head. */
export async function allPoints(backend: BlobStore, id: string, doc: ChainDoc): Promise<Map<string, PointData>> {
  const out = new Map<string, PointData>();
  for (const s of doc.snapshots) out.set(`snapshot ${s.name}`, await pointData(backend, id, doc, s.tlog));
  out.set('head', await pointData(backend, id, doc));
  return out;
}

/** '' when `got` shows the same as `want` at every point, else what differs first. */
export function diffPoints(want: Map<string, PointData>, got: Map<string, PointData>): string {
  for (const [name, w] of want) {
    const g = got.get(name);
    if (g === undefined) return `${name} is missing`;
    if (g.size !== w.size) return `${name}: size ${g.size}, want ${w.size}`;
    if (g.clusters.size !== w.clusters.size) return `${name}: ${g.clusters.size} clusters mapped, want ${w.clusters.size}`;
    for (const [a, data] of w.clusters) {
      const d = g.clusters.get(a);
      if (d === undefined) return `${name}: cluster ${a} unmapped`;
      if (!d.equals(data)) return `${name}: cluster ${a} differs`;
    }
  }
  return '';
}

/** True when `got` shows exactly what `want` holds: the size, and every cluster (holes as zeros). */
export function sameAsRef(got: PointData, want: { size: number; read(offset: number, length: number): Buffer }): boolean {
  if (got.size !== want.size) return false;
  const zero = Buffer.alloc(4096);
  for (let a = 0; a * 4096 < want.size; a++) {
    const w = want.read(a * 4096, 4096);
    const g = (got.clusters.get(a) ?? zero).subarray(0, w.length);
    if (!g.equals(w)) return false;
  }
  for (const a of got.clusters.keys()) if (a * 4096 >= want.size) return false;
  return true;
}

/** Total bytes of the objects under `prefix`. */
export async function bytesUnder(backend: BlobStore, prefix: string): Promise<number> {
  let n = 0;
  for (const key of await backend.list(prefix)) n += (await backend.head(key))?.size ?? 0;
  return n;
}
