/**
 * The orphan gc of a vPool (docs/scrubbing.md, "Orphan vDisk namespaces"): whole vDisk namespaces in the
 * backend (`vdisks/<id>/…`) that nothing references — typically a clone made just before a host loss, whose
 * objects were put but whose tree change never shipped, so the router that took over knows nothing of it.
 * The sweep of one vDisk (sweep.ts) never looks outside its own namespace; this looks at the namespaces.
 *
 * Marks: what the owner says is in use (`referenced`: its tree, its open vDisks and their ancestors, its
 * pending creations and removals; volume/vpool-tree.ts) and every vDisk any tree shipped to the backend names
 * (a pin too many only delays a deletion). Only the owner can say what it has created but not yet shipped,
 * so this runs in the owner (`vpoolfs gc` on the vPool's root, `POST /v1/gc/orphans`), never from a remote
 * tool. The order closes the race with a creation in progress: the backend is listed FIRST, the marks read
 * AFTER. Every object listed was put after its vDisk's tree node or `gc/<id>` record was committed (a clone
 * commits that record before its first put; a new vDisk puts nothing before its node is in the tree), so
 * marks read later name it. A vDisk created after the listing has nothing in the listing to lose.
 * A namespace whose removal the tree shipper has pending is marked (its `gc/<id>`): the shipper removes it.
 */
import type { Logger } from '../../util/log.js';
import type { BlobStore } from '../backend/types.js';
import type { SweepItem } from '../types.js';
import { pinCandidates } from './tree-vdisks.js';

const NAMESPACE = /^vdisks\/([^/]+)\//;

/** The namespaces no mark names: one item per namespace (key `vdisks/<id>/`), with its objects and bytes in the reason. */
export async function orphanPlan(backend: BlobStore, referenced: () => Promise<Set<string>>): Promise<{ items: SweepItem[]; keys: Map<string, string[]> }> {
  // listed first, marked after: see the header
  const keys = new Map<string, string[]>();
  for (const key of await backend.list('vdisks/')) {
    const m = NAMESPACE.exec(key);
    if (m === null) continue;
    const list = keys.get(m[1]) ?? [];
    list.push(key);
    keys.set(m[1], list);
  }
  const marked = await referenced();
  for (const id of await pinCandidates(backend)) marked.add(id);
  const items: SweepItem[] = [];
  const orphans = new Map<string, string[]>();
  for (const [id, list] of keys) {
    if (marked.has(id)) continue;
    let bytes = 0;
    for (const k of list) bytes += (await backend.head(k))?.size ?? 0;
    orphans.set(id, list);
    items.push({
      key: `vdisks/${id}/`,
      reason: `vDisk namespace that no tree, clone lineage or pending creation names (${list.length} objects, ${bytes} bytes): ` +
        'e.g. a clone made just before a host loss whose tree change never shipped, or a removal that lost its record',
    });
  }
  return { items, keys: orphans };
}

/** Deletes the namespaces `plan` found (every object listed then, and anything put there since). */
export async function removeOrphans(backend: BlobStore, plan: { keys: Map<string, string[]> }, log: Logger): Promise<{ objects: number; bytes: number }> {
  let objects = 0;
  let bytes = 0;
  for (const id of plan.keys.keys()) {
    for (const key of await backend.list(`vdisks/${id}/`)) {
      bytes += (await backend.head(key))?.size ?? 0;
      await backend.delete(key);
      objects++;
    }
    log.info('gc: orphan vDisk namespace deleted', { vdisk: id });
  }
  return { objects, bytes };
}
