/**
 * Kernel-engine opcodes of the session itself: INIT (negotiation), DESTROY, INTERRUPT.
 *
 * INIT answers the lower of the kernel's minor and 7.38 and asks only for flags the kernel offers:
 * - ASYNC_READ, ASYNC_DIO: several reads (and O_DIRECT aio) of one file in flight at once;
 * - ATOMIC_O_TRUNC: O_TRUNC comes with OPEN instead of a separate SETATTR;
 * - BIG_WRITES, MAX_PAGES (max_pages 256, max_write 1 MiB): 1 MiB requests instead of 4 KiB / 128 KiB ones;
 * - PARALLEL_DIROPS: lookups and readdirs of one directory are not serialised by the kernel;
 * - HANDLE_KILLPRIV_V2: the kernel leaves clearing set-id bits to the filesystem and marks the superblock
 *   SB_NOSEC, so it stops asking GETXATTR security.capability before every write (docs/fuse-engine.md);
 * - max_background 64 (default 12): more async direct I/O in flight.
 * Not AUTO_INVAL_DATA (GETATTR storms under concurrent reads), not WRITEBACK_CACHE (acknowledged writes must
 * be in the volume layer, not in the page cache), not READDIRPLUS (no gain for a few names per directory).
 */
import { logger } from '../../util/log.js';
import { E } from '../errno.js';
import { C } from './counters.js';
import type { OpHandler } from './context.js';
import type { decode } from './decode.js';
import { emptyReply, initReply } from './encode.js';
import { Init, KERNEL_MAJOR, KERNEL_MINOR, MAX_PAGES, MAX_WRITE } from './protocol.js';

const log = logger('fuse');

type Req<K extends keyof typeof decode> = ReturnType<(typeof decode)[K]>;

export const WANTED_INIT_FLAGS =
  Init.ASYNC_READ | Init.ATOMIC_O_TRUNC | Init.BIG_WRITES | Init.ASYNC_DIO | Init.PARALLEL_DIROPS | Init.MAX_PAGES | Init.HANDLE_KILLPRIV_V2;
export const MAX_BACKGROUND = 64;

/** What vpoolfs answers to the kernel's INIT offer (exported for the protocol tests). */
export function negotiate(offer: { major: number; minor: number; maxReadahead: number; flags: number }) {
  return {
    major: KERNEL_MAJOR,
    minor: Math.min(offer.minor, KERNEL_MINOR),
    maxReadahead: offer.maxReadahead,
    flags: (offer.flags & WANTED_INIT_FLAGS) >>> 0,
    maxBackground: MAX_BACKGROUND,
    congestionThreshold: (MAX_BACKGROUND * 3) / 4,
    maxWrite: MAX_WRITE,
    timeGran: 1,
    maxPages: MAX_PAGES,
    flags2: 0,
  };
}

export const init: OpHandler<Req<'init'>> = (ctx, h, offer) => {
  if (offer.major !== KERNEL_MAJOR || offer.minor < 31) {
    // a kernel this old (before 5.x) is not supported: say so and refuse
    log.error('the kernel speaks a FUSE protocol vpoolfs does not support', { major: offer.major, minor: offer.minor, need: '7.31 or later' });
    return ctx.fail(h, E.EPROTO);
  }
  const r = negotiate(offer);
  ctx.send(initReply(h.unique, r));
  ctx.initDone({ kernel: `${offer.major}.${offer.minor}`, answered: `${r.major}.${r.minor}`, flags: `0x${r.flags.toString(16)}`, maxWrite: r.maxWrite, maxPages: r.maxPages, maxBackground: r.maxBackground });
};

export const destroy: OpHandler<unknown> = (ctx, h) => ctx.send(emptyReply(h.unique));

/** Recorded only: the interrupted request still completes (its reply is then dropped by the kernel, which is fine). */
export const interrupt: OpHandler<Req<'interrupt'>> = (ctx, _h, r) => {
  Atomics.add(ctx.counters, C.INTERRUPTS, 1);
  if (ctx.debug) log.debug('FUSE INTERRUPT', { unique: r.unique });
};
