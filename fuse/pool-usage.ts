/**
 * What `df` shows for a vPool (statfs), and the walk over its vDisks that the management API lists too.
 * A vPool is thin: its "size" is what its vDisks were given (provisioned bytes), "used" what was really
 * written into them, "available" the difference — not the write cache's host filesystem, whose figures say
 * nothing about the pool. Inodes: the nodes in use, out of a fixed large budget.
 */
import { CLUSTER_SIZE, type NodeStat, type StatFs, type VPool } from '../volume/types.js';

/** Every node under `dir` (depth first, names in directory order), with its vPool path and stat. Nodes gone meanwhile are skipped. */
export function* walkTree(vpool: VPool, dir = '/'): Generator<{ path: string; stat: NodeStat }> {
  for (const name of vpool.readdir(dir)) {
    const p = dir === '/' ? `/${name}` : `${dir}/${name}`;
    let stat: NodeStat;
    try {
      stat = vpool.stat(p);
    } catch {
      continue;
    }
    yield { path: p, stat };
    if (stat.kind === 'dir') yield* walkTree(vpool, p);
  }
}

export interface PoolUsage {
  vdisks: number;
  dirs: number;
  /** Sum of the vDisks' sizes. */
  provisionedBytes: number;
  /** Sum of what `st_blocks` counts for each vDisk. */
  allocatedBytes: number;
}

export function poolUsage(vpool: VPool): PoolUsage {
  const u: PoolUsage = { vdisks: 0, dirs: 0, provisionedBytes: 0, allocatedBytes: 0 };
  for (const { stat } of walkTree(vpool)) {
    if (stat.kind === 'dir') u.dirs++;
    else {
      u.vdisks++;
      u.provisionedBytes += stat.size;
      u.allocatedBytes += stat.allocatedBytes;
    }
  }
  return u;
}

/** Inodes a vPool offers (a budget for `df -i`: the tree has no fixed table). */
export const INODE_BUDGET = 1e9;

/** statfs of the vPool: size = provisioned, used = written, free = the rest; inodes used = nodes in the tree. */
export function poolStatfs(vpool: VPool): StatFs {
  const base = vpool.statfs();
  const u = poolUsage(vpool);
  const used = Math.ceil(u.allocatedBytes / CLUSTER_SIZE);
  const total = Math.max(used, Math.ceil(u.provisionedBytes / CLUSTER_SIZE));
  const nodes = u.vdisks + u.dirs + 1; // the root
  return { blockSize: CLUSTER_SIZE, totalBlocks: total, freeBlocks: total - used, files: nodes, freeFiles: Math.max(0, INODE_BUDGET - nodes), nameMax: base.nameMax };
}
