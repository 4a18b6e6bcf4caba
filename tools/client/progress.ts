/**
 * A progress bar (cli-progress, on stderr) for a CLI verb that waits on long work in the daemon — a clone or
 * a rollback waits for its vDisk's data to reach the backend. While the call runs, the vDisk's figures are
 * polled from the API and the bar shows the bytes and objects (SCOs + TLogs) shipped out of what was
 * waiting, and the rate. It appears only when the work lasts (over half a second) and stderr is a terminal,
 * or at once with `--progress` (for scripts and logs: one line per update, then the final figures).
 */
import { SingleBar } from 'cli-progress';
import type { VDiskView } from '../../api/views.js';
import { humanBytes } from './human.js';

const POLL_MS = 500;

export async function withProgressBar<T>(opts: { force: boolean; label: string }, poll: () => Promise<VDiskView>, work: Promise<T>): Promise<T> {
  const show = opts.force || process.stderr.isTTY === true;
  if (!show) return work;
  let done = false;
  const finished = work.finally(() => (done = true));
  if (!opts.force) {
    await Promise.race([finished.catch(() => undefined), new Promise((r) => setTimeout(r, POLL_MS))]);
    if (done) return finished;
  }
  let first: VDiskView;
  try {
    first = await poll();
  } catch {
    return finished; // no figures: just wait
  }
  const total = Math.max(1, first.dirtyBytes);
  const objects = first.uploadBacklog.scos + first.uploadBacklog.tlogs;
  const t0 = Date.now();
  const bar = new SingleBar({
    stream: process.stderr,
    noTTYOutput: opts.force,
    notTTYSchedule: POLL_MS,
    format: `${opts.label} [{bar}] {percentage}% | {doneH}/{totalH} | {objDone}/{objTotal} objects | {rateH}/s`,
    hideCursor: true,
  });
  const payload = (doneBytes: number, objDone: number) => {
    const s = (Date.now() - t0) / 1000;
    return { doneH: humanBytes(doneBytes), totalH: humanBytes(first.dirtyBytes), objDone, objTotal: objects, rateH: humanBytes(s > 0 ? Math.round(doneBytes / s) : 0) };
  };
  bar.start(total, 0, payload(0, 0));
  const timer = setInterval(() => {
    poll().then(
      (v) => {
        const doneBytes = Math.max(0, first.dirtyBytes - v.dirtyBytes);
        bar.update(Math.min(total, doneBytes), payload(doneBytes, Math.max(0, objects - v.uploadBacklog.scos - v.uploadBacklog.tlogs)));
      },
      () => undefined,
    );
  }, POLL_MS);
  try {
    const result = await finished;
    bar.update(total, payload(first.dirtyBytes, objects));
    return result;
  } finally {
    clearInterval(timer);
    bar.stop();
  }
}

/** What the scrub bar shows: work units (vDisks, with the running one's segments as a fraction) and bytes. */
export interface ScrubBarFigures {
  /** vDisks done, plus the running one's share done (0..1). */
  units: number;
  current: string;
  phase: string;
  bytesRead: number;
  bytesWritten: number;
  bytesFreed: number;
}

/**
 * The progress bar of `vpoolfs scrub` (tools/commands/scrub-cmds.ts) on stderr: vDisks done out of all, the running
 * one's phase, bytes read, written and freed so far. Shown when stderr is a terminal, or always with
 * `--progress` (then one line per update, for logs); stdout (the --json lines) is never touched. A no-op
 * otherwise.
 */
export class ScrubBar {
  private readonly bar: SingleBar | null;

  constructor(total: number, force: boolean) {
    const show = force || process.stderr.isTTY === true;
    this.bar = show
      ? new SingleBar({
        stream: process.stderr,
        noTTYOutput: force,
        notTTYSchedule: POLL_MS,
        format: 'scrub [{bar}] {unitsH}/{total} vDisks | {current}: {phase} | read {readH}, wrote {writtenH}, freed {freedH}',
        hideCursor: true,
      })
      : null;
    this.bar?.start(total, 0, { unitsH: '0', current: '', phase: 'starting', readH: '0B', writtenH: '0B', freedH: '0B' });
  }

  update(f: ScrubBarFigures): void {
    this.bar?.update(f.units, {
      unitsH: f.units.toFixed(1).replace(/\.0$/, ''), current: f.current, phase: f.phase,
      readH: humanBytes(f.bytesRead), writtenH: humanBytes(f.bytesWritten), freedH: humanBytes(f.bytesFreed),
    });
  }

  stop(): void {
    this.bar?.stop();
  }
}

export const SCRUB_POLL_MS = POLL_MS;
