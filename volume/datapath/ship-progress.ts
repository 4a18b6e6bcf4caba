/**
 * Progress of a long ship to the backend (a clean stop with a full write cache, a slow or absent backend):
 * what is left is logged every few seconds while `ship` runs, then how much was shipped.
 */
import { logger } from '../../util/log.js';
import type { VDisk } from '../types.js';

const log = logger('vpool');

/** How often a long ship logs how much is left. */
const SHIP_PROGRESS_MS = 2000;

function pending(disks: readonly VDisk[]): { dirtyBytes: number; scos: number; tlogs: number } {
  const sum = { dirtyBytes: 0, scos: 0, tlogs: 0 };
  for (const v of disks) {
    const i = v.info();
    sum.dirtyBytes += i.dirtyBytes;
    sum.scos += i.uploadBacklog.scos;
    sum.tlogs += i.uploadBacklog.tlogs;
  }
  return sum;
}

/** Runs `ship`, logging the progress of `disks` toward the backend while it lasts. */
export async function withShipProgress(vpool: string, disks: readonly VDisk[], ship: () => Promise<void>): Promise<void> {
  const t0 = Date.now();
  const first = pending(disks);
  const timer = first.dirtyBytes === 0 ? null : setInterval(() => {
    log.info('shipping to the backend', { vpool, ...pending(disks), startDirtyBytes: first.dirtyBytes, elapsedMs: Date.now() - t0 });
  }, SHIP_PROGRESS_MS);
  timer?.unref();
  try {
    await ship();
  } finally {
    if (timer !== null) clearInterval(timer);
  }
  if (first.dirtyBytes > 0) log.info('shipped to the backend', { vpool, bytes: first.dirtyBytes, ms: Date.now() - t0 });
}
