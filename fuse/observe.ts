/**
 * An optional hook for metrics: when the mount is given an OpObserver, every FUSE handler is wrapped so
 * that the observer learns the operation, its start time and its result code (bytes for read/write).
 * Without an observer nothing is wrapped and the handlers run bare.
 */
import type { Cb } from 'fuse-native';

export interface OpObserver {
  /**
   * `code` is the handler's answer: a negative errno, 0, or a byte count for read and write; `path` the
   * vPool path the operation was on (its first argument), for per-vDisk figures.
   */
  done(op: string, startNs: bigint, code: number, path: string | undefined): void;
}

type Handler = (...args: any[]) => void;

export function instrument<T extends Record<string, Handler>>(ops: T, observer: OpObserver): T {
  const out: Record<string, Handler> = {};
  for (const [op, fn] of Object.entries(ops)) {
    out[op] = (...args: unknown[]) => {
      const start = process.hrtime.bigint();
      const cb = args[args.length - 1] as Cb;
      args[args.length - 1] = (code: number, ...rest: unknown[]) => {
        observer.done(op, start, code, typeof args[0] === 'string' ? args[0] : undefined);
        cb(code, ...rest);
      };
      fn(...args);
    };
  }
  return out as T;
}
