/**
 * The first steps of a vPool's start (volume/vpool.ts start()): its tree, from the local metadata store,
 * else from the backend (a rebuild on a new router), else a new one; then the local leftovers of vDisks
 * whose removal a restart interrupted, or of clones a crash cut short.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { MetadataStore } from '../mds/types.js';
import type { BlobStore } from './backend/types.js';
import { TREE_KEY, TREE_PREFIX } from './datapath/formats/backend-layout.js';
import { GC_PREFIX } from './tree/tree-shipper.js';
import { Tree, type TreeDump } from './tree/tree.js';
import { vdiskMdsPrefix } from './vdisk/vdisk-meta.js';

/** The vPool's tree and where it came from (for the log); a tree not in the metadata store is committed there. */
export async function loadTree(mds: MetadataStore, backend: BlobStore): Promise<{ tree: Tree; from: string }> {
  let tree = Tree.load(mds);
  let from = 'local metadata';
  if (tree === null) {
    // the highest claim epoch's tree (a fenced router's late ships go to its own, lower, key), else the one
    // from before claims
    const shipped = await backend.list(TREE_PREFIX);
    const key = shipped.length > 0 ? shipped[shipped.length - 1] : (await backend.head(TREE_KEY)) !== null ? TREE_KEY : null;
    if (key !== null) {
      tree = Tree.fromDump(JSON.parse((await backend.get(key)).toString()) as TreeDump);
      from = `backend (${key})`;
    } else {
      tree = Tree.empty();
      from = 'new';
    }
    await mds.commit(tree.allOps());
  }
  return { tree, from };
}

/** vDisks whose removal a restart interrupted, or clones a crash cut short: their local state goes too. */
export async function dropLeftovers(mds: MetadataStore, tree: Tree, writeCacheDir: string): Promise<void> {
  const live = new Set(tree.files().map((n) => n.vdiskId));
  for (const [key] of [...mds.range(GC_PREFIX)]) {
    const id = key.slice(GC_PREFIX.length);
    if (live.has(id)) continue;
    fs.rmSync(path.join(writeCacheDir, id), { recursive: true, force: true });
    await mds.deletePrefix(vdiskMdsPrefix(id));
  }
}
