/**
 * The descriptor limit of a mount (RLIMIT_NOFILE), checked at its start. The write cache keeps at most a
 * budget of SCO descriptors open — a quarter of the soft limit (volume/datapath/write-cache/sco-fd-budget.ts)
 * — and opens the others again when it reads them; the read cache keeps up to 4,096 pieces open, lmdb,
 * FUSE, sockets and the DTL need theirs. Many distributions start a process with a soft limit of 1,024 and
 * a hard one far above: the mount raises its soft limit to the hard one itself (util-linux `prlimit` on its
 * own pid: Node has no setrlimit; raising the soft limit up to the hard one needs no privilege), then sizes
 * the budget from it. Still below what the config would use, it says so once, with the numbers and the fix
 * (LimitNOFILE= in the unit, as systemd/vpoolfs@.service sets, or `ulimit -n`).
 */
import { execFileSync } from 'node:child_process';
import type { Logger } from '../../util/log.js';
import { DEFAULT_WRITE_CACHE_BYTES } from '../../volume/types.js';
import { SLOT_SIZE } from '../../volume/datapath/formats/sco-format.js';
import { budgetFor, nofileLimits, scoFdBudget } from '../../volume/datapath/write-cache/sco-fd-budget.js';

/** Below this soft limit the read cache's open pieces (4,096) alone could exhaust it. */
export const WANTED_NOFILE = 16384;

/**
 * Raises the soft limit to the hard one if it is lower, re-sizes the SCO descriptor budget, and warns when
 * the limit stays low for `cfg`. Returns the soft limit in force.
 */
export function checkNofile(cfg: { writeCacheBytes?: number; scoClusters?: number }, log: Logger): number | null {
  let limits = nofileLimits();
  if (limits === null) return null;
  if (limits.soft < limits.hard) {
    const to = limits.hard >= Number.MAX_SAFE_INTEGER ? 'unlimited' : String(limits.hard);
    try {
      execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${to}:${to}`], { stdio: 'ignore', timeout: 5000 });
      const before = limits.soft;
      limits = nofileLimits() ?? limits;
      if (limits.soft > before) log.info('raised the open-file limit (RLIMIT_NOFILE) to its hard limit', { from: before, to: limits.soft });
    } catch (err) {
      log.warn('could not raise the open-file limit (RLIMIT_NOFILE) to its hard limit (prlimit)', { soft: limits.soft, hard: limits.hard, error: String(err) });
    }
  }
  if (process.env.VPOOLFS_SCO_FDS === undefined) scoFdBudget.limit = budgetFor(limits.soft);
  const scoBytes = (cfg.scoClusters ?? 1024) * SLOT_SIZE;
  const localScos = Math.ceil((cfg.writeCacheBytes ?? DEFAULT_WRITE_CACHE_BYTES) / scoBytes);
  if (limits.soft < WANTED_NOFILE) {
    log.warn('the open-file limit (RLIMIT_NOFILE) is low for this mount: reads of the write cache will open SCO files again, and many read-cache pieces or vDisks may hit EMFILE', {
      soft: limits.soft, hard: limits.hard, wanted: WANTED_NOFILE, scoDescriptorBudget: scoFdBudget.limit, localScosAtMost: localScos,
      fix: 'LimitNOFILE=65536 in the systemd unit (systemd/vpoolfs@.service has it), or ulimit -n 65536 before vpoolfs mount',
    });
  } else if (localScos > scoFdBudget.limit) {
    log.info('the write cache can hold more SCOs than descriptors are kept open for: the others are opened again when read', {
      localScosAtMost: localScos, scoDescriptorBudget: scoFdBudget.limit, soft: limits.soft,
    });
  }
  return limits.soft;
}
