/**
 * Retrying backend calls: exponential back-off with jitter, forever unless told otherwise, logging the
 * first failure of a streak and its end — a backend outage is waited out, not turned into an error.
 */
import type { Logger } from '../../util/log.js';
import { BackendError } from '../../util/errors.js';

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

/** How long a first request to the backend may take when a vPool opens before the backend counts as unreachable (a hung endpoint): the mount says so within seconds instead of hanging. */
export const OPEN_PROBE_MS = 5000;

/** `p`, or a BACKEND error marked unreachable (context.unreachable) once `ms` passed without an answer. */
export function answerWithin<T>(p: Promise<T>, ms: number, url: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BackendError('BACKEND', `no answer within ${ms / 1000} s`, { url, unreachable: true })), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
