/**
 * The scrubbing part of the `user.vdisk.*` API (docs/scrubbing.md), merged into ./vdisk-xattr.ts:
 *
 *   user.vdisk.scrub run        scrub the vDisk here (the job, the apply, the sweep); returns when done. The
 *                               kernel holds the file's inode lock across a setxattr, so the guest's writes to
 *                               this vDisk wait for the whole scrub: scripts on a live vDisk use `start`
 *   user.vdisk.scrub start      the same in the background: returns at once (EBUSY if one runs); how it went is
 *                               in user.vdisk.scrubbing (running, progress, lastRun, lastReport) — what `vpoolfs scrub` does
 *   user.vdisk.scrub apply      apply the newest result a remote scrubber (`vpoolfs scrub --backend`) left
 *   user.vdisk.gc dry-run|run   mark and sweep of the vDisk's backend objects: list, or delete, what nothing references
 *   user.vdisk.scrubbing        view: {running, last, lastReport, garbageBytes, pendingGarbage, lastSweep}
 */
import { VolumeError } from '../util/errors.js';
import type { VPool } from '../volume/types.js';
import type { ScrubApi } from '../volume/types.js';
import type { VdiskXattrTable } from './xattr-table.js';

const scrubberOf = (vpool: VPool): ScrubApi => vpool.scrub;

export const scrubTable: VdiskXattrTable = {
  commands: {
    'user.vdisk.scrub': async (vpool, p, value) => {
      if (value === 'run') await scrubberOf(vpool).scrub(p);
      else if (value === 'start') scrubberOf(vpool).start(p);
      else if (value === 'apply') {
        if ((await scrubberOf(vpool).applyPending(p)) === null) throw new VolumeError('NOT_FOUND', `no scrub result waits for ${p} in the backend`, { path: p });
      } else throw new VolumeError('INVALID', `user.vdisk.scrub takes run, start or apply, got ${JSON.stringify(value.slice(0, 80))}`, { path: p });
    },
    'user.vdisk.gc': async (vpool, p, value) => {
      if (value !== 'dry-run' && value !== 'run') throw new VolumeError('INVALID', `user.vdisk.gc takes dry-run or run, got ${JSON.stringify(value.slice(0, 80))}`, { path: p });
      await scrubberOf(vpool).sweep(p, value === 'dry-run');
    },
  },
  views: {
    'user.vdisk.scrubbing': (vpool, p) => scrubberOf(vpool).statusAt(p),
  },
};
