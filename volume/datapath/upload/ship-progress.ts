/**
 * Progress of a long ship to the backend (a clean stop with a full write cache, a slow or absent backend; a
 * clone or rollback waiting for its vDisk's data): every few seconds while `ship` runs, the bytes and
 * objects (SCOs + TLogs) shipped out of how many, the rate, and — while the backend refuses — the cause it
 * gave, each time (not only the first); then how much was shipped. `onProgress` gets the same figures.
 */
import { logger } from '../../../util/log.js';
import { lastBackendFailure } from '../../backend/retry.js';
import type { VDisk } from '../../types.js';

export interface ShipProgress {
  /** What is being waited for: "clean stop", "clone of /a", … */
  what: string;
  doneBytes: number;
  totalBytes: number;
  doneObjects: number;
  totalObjects: number;
  bytesPerSecond: number;
  elapsedMs: number;
  /** The backend's latest refusal while it lasts, or null. */
  backendError: string | null;
}

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

/** Where `disks` stand against where they stood at `first`. */
export function shipProgress(what: string, disks: readonly VDisk[], first: { dirtyBytes: number; scos: number; tlogs: number }, t0: number): ShipProgress {
  const now = pending(disks);
  const elapsedMs = Date.now() - t0;
  const doneBytes = Math.max(0, first.dirtyBytes - now.dirtyBytes);
  const totalObjects = first.scos + first.tlogs;
  const failure = lastBackendFailure();
  return {
    what,
    doneBytes,
    totalBytes: Math.max(first.dirtyBytes, doneBytes),
    doneObjects: Math.max(0, totalObjects - now.scos - now.tlogs),
    totalObjects,
    bytesPerSecond: elapsedMs > 0 ? Math.round((doneBytes * 1000) / elapsedMs) : 0,
    elapsedMs,
    backendError: failure !== null && failure.at >= t0 ? `${failure.what}: ${failure.error}` : null,
  };
}

/** Runs `ship`, logging the progress of `disks` toward the backend while it lasts. */
export async function withShipProgress(vpool: string, disks: readonly VDisk[], ship: () => Promise<void>, what = 'ship', onProgress?: (p: ShipProgress) => void): Promise<void> {
  const t0 = Date.now();
  const first = pending(disks);
  const timer = first.dirtyBytes === 0 && first.scos + first.tlogs === 0 ? null : setInterval(() => {
    const p = shipProgress(what, disks, first, t0);
    const { backendError, ...figures } = p;
    if (backendError !== null) log.warn('shipping to the backend: the backend refuses, retrying', { vpool, ...figures, cause: backendError });
    else log.info('shipping to the backend', { vpool, ...figures });
    onProgress?.(p);
  }, SHIP_PROGRESS_MS);
  timer?.unref();
  try {
    await ship();
  } finally {
    if (timer !== null) clearInterval(timer);
  }
  if (first.dirtyBytes > 0) log.info('shipped to the backend', { vpool, what, bytes: first.dirtyBytes, objects: first.scos + first.tlogs, ms: Date.now() - t0 });
}
