/**
 * Retrying backend calls: exponential back-off with jitter, forever unless told otherwise, logging the
 * first failure of a streak and its end — a backend outage is waited out, not turned into an error.
 */
import { logger, type Logger } from '../../util/log.js';
import { BackendError } from '../../util/errors.js';

const log = logger('backend');

export interface RetryOptions {
  what: string;
  log: Logger;
  /** Give up after this many attempts (default: never). */
  attempts?: number;
  /** Stop retrying when this returns true (e.g. the vDisk was deleted). */
  cancelled?: () => boolean;
  minDelayMs?: number;
  maxDelayMs?: number;
}

/** The latest failure of a retried backend call (what, the error, when), or null once one succeeded since: progress logs name it. */
let lastFailure: { what: string; error: string; at: number } | null = null;

/** The cause the backend gave the latest time a retried call failed, if no call succeeded since. */
export function lastBackendFailure(): { what: string; error: string; at: number } | null {
  return lastFailure;
}

export async function withRetry<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  let delay = opts.minDelayMs ?? 50;
  const max = opts.maxDelayMs ?? 5000;
  let failures = 0;
  for (;;) {
    try {
      const v = await fn();
      lastFailure = null;
      if (failures > 0) opts.log.info(`${opts.what}: succeeded after ${failures} failed attempts`);
      return v;
    } catch (err) {
      failures++;
      lastFailure = { what: opts.what, error: String((err as Error).message ?? err), at: Date.now() };
      if (err instanceof BackendError && (err.code === 'INVALID' || err.code === 'CLOSED' || err.code === 'FENCED')) throw err; // FENCED: this router lost its claim (volume/claim/)
      if (opts.cancelled?.()) throw err;
      if (opts.attempts !== undefined && failures >= opts.attempts) throw err;
      if (failures === 1 || failures % 20 === 0) {
        opts.log.warn(`${opts.what}: failed, retrying`, { attempt: failures, error: String((err as Error).message ?? err) });
      }
      await sleep(delay * (0.75 + Math.random() / 2));
      delay = Math.min(max, delay * 2);
    }
  }
}

/**
 * A first request to the backend when a vPool opens: after OPEN_WARN_MS without an answer the log says so,
 * naming the URL (a hung endpoint is reported within seconds), and after OPEN_PROBE_MS the backend counts as
 * unreachable instead of hanging the mount. Not less: a live but busy store can be slow to answer its first
 * request (radosgw creates its pools with the first bucket, seconds under load).
 */
export const OPEN_WARN_MS = 5000;
export const OPEN_PROBE_MS = 30_000;

/** `p`, or a BACKEND error marked unreachable (context.unreachable) once `ms` passed without an answer. */
export function answerWithin<T>(p: Promise<T>, ms: number, url: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const warn = ms > OPEN_WARN_MS ? setTimeout(() => log.warn(`the backend has not answered for ${OPEN_WARN_MS / 1000} s; waiting up to ${ms / 1000} s`, { url }), OPEN_WARN_MS) : undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BackendError('BACKEND', `no answer within ${ms / 1000} s`, { url, unreachable: true })), ms);
  });
  return Promise.race([p, timeout]).finally(() => {
    clearTimeout(timer);
    clearTimeout(warn);
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
