/**
 * The vDisk ids of the backend's tree: what a scrubber on another host can know of. Since claims, each
 * claim epoch ships its tree to `pool/tree/<epoch>.json` (treeKey); `pool/tree.json` is only the tree of a
 * build without claims. Reading only the latter found no vDisk at all on a claimed pool, so a remote scrub
 * saw no clone, pinned none of the SCOs their bases name, and rewrote them out of the parent's chain (after
 * a rebuild the parent no longer knew their slot counts: the clone's reads failed).
 */
import { isCode, VolumeError } from '../../util/errors.js';
import type { BlobStore } from '../backend/types.js';
import { TREE_KEY, TREE_PREFIX } from '../datapath/formats/backend-layout.js';
import type { TreeDump } from '../tree/tree.js';

/** The backend's tree keys, oldest first: the one from before claims, then each claim epoch's. */
async function treeKeys(backend: BlobStore): Promise<string[]> {
  const epochs = (await backend.list(TREE_PREFIX)).sort(); // 16 hex digits: text order is epoch order
  return (await backend.head(TREE_KEY)) !== null ? [TREE_KEY, ...epochs] : epochs;
}

/** The ids in tree `key`, or null when the key is gone (the shipper deletes older epochs' trees once a newer one is in). */
async function idsIn(backend: BlobStore, key: string): Promise<string[] | null> {
  let raw: Buffer;
  try {
    raw = await backend.get(key);
  } catch (err) {
    if (isCode(err, 'NOT_FOUND')) return null;
    throw err;
  }
  const dump = JSON.parse(raw.toString()) as TreeDump;
  return dump.nodes.filter((n) => n.vdiskId !== undefined).map((n) => n.vdiskId!);
}

/**
 * The ids of the trees listed, read until the newest one listed is still there when read (it vanished: a
 * newer epoch shipped its tree meanwhile, so list again). `all`: every tree's ids, else the newest's only.
 */
async function readTrees(backend: BlobStore, all: boolean): Promise<string[]> {
  for (let attempt = 0; ; attempt++) {
    const keys = await treeKeys(backend);
    if (keys.length === 0) return [];
    const newest = await idsIn(backend, keys[keys.length - 1]);
    if (newest === null) {
      if (attempt < 5) continue;
      throw new VolumeError('BACKEND', `the backend's tree ${keys[keys.length - 1]} vanished between list and get ${attempt + 1} times`, { key: keys[keys.length - 1] });
    }
    const ids = new Set(newest);
    if (all) for (const key of keys.slice(0, -1)) for (const id of (await idsIn(backend, key)) ?? []) ids.add(id);
    return [...ids];
  }
}

/** The vDisks of the tree a rebuild would load (the highest claim epoch's, as loadTree in ../vpool-start.ts). */
export async function treeVDisks(backend: BlobStore): Promise<string[]> {
  return readTrees(backend, false);
}

/**
 * Every vDisk any shipped tree names (all epochs still in the backend): the candidates whose clone bases may
 * pin a vDisk's SCOs. Wider than `treeVDisks` on purpose: a clone a fenced router shipped only to its own,
 * older tree may still have a base in the backend, and a pin too many only keeps a SCO until the next scrub.
 */
export async function pinCandidates(backend: BlobStore): Promise<string[]> {
  return readTrees(backend, true);
}
