/**
 * SEEK_DATA / SEEK_HOLE over a vDisk's cluster map (lseek(2), so that `qemu-img map`, `cp --sparse` and
 * the like see the holes). Data is any mapped cluster, whatever namespace it reads from: a clone's map
 * holds its parent's clusters at a deeper clone depth, so they count as data here. Granularity is the
 * cluster (4 KiB); the end of the vDisk is an implicit hole.
 *
 * Cost: SEEK_HOLE walks mapped clusters from the offset; SEEK_DATA walks the offset's map page, then
 * the mapped entries in address order (ClusterMap.entries), so a call costs at most the mapped clusters.
 */
import type { ClusterMap } from '../datapath/formats/cluster-map.js';
import { PAGE_CLUSTERS } from '../datapath/formats/cluster-map.js';
import { CLUSTER_SIZE } from '../types.js';

/**
 * The first offset ≥ `offset` that is data (`what` = 'data') or a hole ('hole') in a vDisk of `size`
 * bytes, or -1 when there is none (ENXIO: `offset` at or past the end, or no data after it).
 */
export function seekExtent(map: ClusterMap, size: number, offset: number, what: 'data' | 'hole'): number {
  if (offset < 0 || offset >= size) return -1;
  const lastCluster = Math.floor((size - 1) / CLUSTER_SIZE);
  let a = Math.floor(offset / CLUSTER_SIZE);
  if (what === 'hole') {
    while (a <= lastCluster && map.scoOf(a) !== 0) a++;
    return a > lastCluster ? size : Math.max(offset, a * CLUSTER_SIZE);
  }
  const pageEnd = Math.min(lastCluster + 1, (Math.floor(a / PAGE_CLUSTERS) + 1) * PAGE_CLUSTERS);
  for (; a < pageEnd; a++) if (map.scoOf(a) !== 0) return Math.max(offset, a * CLUSTER_SIZE);
  for (const [address] of map.entries()) {
    if (address < pageEnd) continue;
    return address > lastCluster ? -1 : address * CLUSTER_SIZE;
  }
  return -1;
}
