/**
 * Converts the volume layer's NodeStat and StatFs into what fuse-native hands to the kernel:
 * type bits from the node kind, st_blocks = allocatedBytes / 512, st_blksize 4096, times in ms.
 */
import type { FuseStatfs } from 'fuse-native';
import type { NodeStat, StatFs } from '../volume/types.js';

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const UINT32_MAX = 0xffffffff;

/** The 18 × uint32 layout fuse-native's C glue reads (populate_stat): what getattr hands over. */
export function toStatArray(s: NodeStat): Uint32Array {
  const a = new Uint32Array(18);
  a[0] = (s.kind === 'dir' ? S_IFDIR : S_IFREG) | (s.mode & 0o7777);
  a[1] = s.uid;
  a[2] = s.gid;
  split(a, 3, s.size);
  a[6] = s.nlink;
  a[7] = s.ino % 0x100000000;
  a[9] = 4096;
  split(a, 10, Math.ceil(s.allocatedBytes / 512));
  split(a, 12, Math.floor(s.atimeMs));
  split(a, 14, Math.floor(s.mtimeMs));
  split(a, 16, Math.floor(s.ctimeMs));
  return a;
}

function split(a: Uint32Array, i: number, n: number): void {
  const low = n % 0x100000000;
  a[i] = low;
  a[i + 1] = (n - low) / 0x100000000;
}

/** statvfs fields are 32-bit in fuse-native: grow the fragment size until the block counts fit. */
export function toFuseStatfs(s: StatFs): FuseStatfs {
  let frsize = s.blockSize;
  let total = s.totalBlocks;
  let free = s.freeBlocks;
  while (total > UINT32_MAX) {
    frsize *= 2;
    total = Math.floor(total / 2);
    free = Math.floor(free / 2);
  }
  // the volume layer counts the nodes in use; statvfs wants the total
  const files = Math.min(s.files + s.freeFiles, UINT32_MAX);
  const freeFiles = Math.min(s.freeFiles, UINT32_MAX);
  return {
    bsize: s.blockSize,
    frsize,
    blocks: total,
    bfree: free,
    bavail: free,
    files,
    ffree: freeFiles,
    favail: freeFiles,
    fsid: 0,
    flag: 0,
    namemax: s.nameMax,
  };
}
