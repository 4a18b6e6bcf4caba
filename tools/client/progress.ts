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
