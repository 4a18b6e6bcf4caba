/** The vDisk ids of the backend's tree (`pool/tree.json`): what a scrubber on another host can know of. */
import type { BlobStore } from '../backend/types.js';
import { TREE_KEY } from '../datapath/backend-layout.js';
import type { TreeDump } from '../tree/tree.js';

export async function treeVDisks(backend: BlobStore): Promise<string[]> {
  if ((await backend.head(TREE_KEY)) === null) return [];
  const dump = JSON.parse((await backend.get(TREE_KEY)).toString()) as TreeDump;
  return dump.nodes.filter((n) => n.vdiskId !== undefined).map((n) => n.vdiskId!);
}
