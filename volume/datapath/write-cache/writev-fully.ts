/**
 * One positioned writev through the write cache's I/O seam (cache-io.ts) that writes all of `iov`: a short
 * write is finished piece by piece; a write that makes no progress is NO_SPACE.
 */
import { VolumeError } from '../../../util/errors.js';
import type { CacheIo } from './cache-io.js';

/** Writes all of `iov` at `position` of `fd`. */
export function writevFully(io: CacheIo, fd: number, iov: Uint8Array[], position: number): void {
  let total = 0;
  for (const b of iov) total += b.length;
  let done = io.writev(fd, iov, position);
  while (done < total) {
    // short write (rare: a full disk or a signal): finish the rest piece by piece
    let skip = done;
    const rest: Uint8Array[] = [];
    for (const b of iov) {
      if (skip >= b.length) { skip -= b.length; continue; }
      rest.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    const n = io.writev(fd, rest, position + done);
    if (n === 0) throw new VolumeError('NO_SPACE', 'write cache: short write', { fd });
    done += n;
  }
}
