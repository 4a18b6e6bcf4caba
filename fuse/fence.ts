/**
 * The stop fence: before the final ship to the backend, the daemon stops accepting changes so that every
 * acknowledged write is in what it ships. Once fenced, mutating operations answer EIO ("the vPool is
 * stopping") and drained() resolves when the ones already running have answered. Reads keep working.
 */
import type { Cb } from 'fuse-native';
import { logger } from '../util/log.js';
import { E } from './errno.js';

const log = logger('fuse');

/** Operations that change data, sizes, the tree or attributes. */
export const MUTATING = ['write', 'truncate', 'ftruncate', 'create', 'mknod', 'mkdir', 'rmdir', 'unlink', 'rename', 'setxattr', 'removexattr', 'utimens', 'chmod', 'chown', 'fallocate'];

type Handler = (...args: any[]) => void;

export class Fence {
  private fenced = false;
  private inflight = 0;
  private waiters: (() => void)[] = [];
  private refused = 0;

  /** Wraps the mutating handlers of `ops` (in place) so that they count in-flight calls and obey the fence. */
  guard(ops: Record<string, Handler>): void {
    for (const name of MUTATING) {
      const fn = ops[name];
      if (!fn) continue;
      ops[name] = (...args: unknown[]) => {
        const cb = args[args.length - 1] as Cb;
        if (this.fenced) {
          if (this.refused++ === 0) log.warn('the vPool is stopping: changes are refused with EIO from now on', { op: name });
          return cb(E.EIO);
        }
        this.inflight++;
        args[args.length - 1] = (code: number, ...rest: unknown[]) => {
          if (--this.inflight === 0 && this.waiters.length > 0) for (const w of this.waiters.splice(0)) w();
          cb(code, ...rest);
        };
        fn(...args);
      };
    }
  }

  /** Refuses every new change; resolves once the changes already running have answered. */
  close(): Promise<void> {
    this.fenced = true;
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
