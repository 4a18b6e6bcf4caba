/**
 * Kernel-engine opcodes on open files: OPEN, CREATE, READ, WRITE, FLUSH, RELEASE, FSYNC, FALLOCATE, LSEEK.
 * Files open with FOPEN_PARALLEL_DIRECT_WRITES (O_DIRECT writes to one file are not serialised on the inode
 * lock) and without FOPEN_KEEP_CACHE: each open drops the file's cached pages, as with fuse-native, because
 * a vDisk's data can change behind this kernel (rollback, and later NBD exports and other routers); hypervisors
 * use O_DIRECT anyway. With ATOMIC_O_TRUNC the kernel leaves O_TRUNC to OPEN: done here.
 */
import type { NodeStat } from '../../volume/types.js';
import { E } from '../errno.js';
import type { KernelCtx, OpHandler } from './context.js';
import { countWrite } from './counters.js';
import type { decode, InHeader } from './decode.js';
import { createReply, emptyReply, lseekReply, openReply, replyHeader, writeReply } from './encode.js';
import { killSuidgid } from './ops-entry.js';
import { giveReadBuffer, takeReadBuffer } from './read-buffers.js';
import { childOf, pathOf } from './ops-common.js';
import { FOPEN_DIRECT_IO, FOPEN_PARALLEL_DIRECT_WRITES, FSYNC_FDATASYNC, SEEK_DATA, SEEK_HOLE, WRITE_KILL_SUIDGID } from './protocol.js';

type Req<K extends keyof typeof decode> = ReturnType<(typeof decode)[K]>;

export const OPEN_FLAGS = FOPEN_PARALLEL_DIRECT_WRITES;
const O_TRUNC = 0o1000;
const O_DIRECT = 0o40000;

/**
 * The open reply's flags: an O_DIRECT open also gets FOPEN_DIRECT_IO, without which the kernel takes the
 * inode lock for every direct write and ignores FOPEN_PARALLEL_DIRECT_WRITES (measured with the C
 * passthrough of bench/: 4 threads of synchronous 4 KiB writes 3.4k IOPS without it, 23k with it).
 */
export function openFlags(flags: number): number {
  return flags & O_DIRECT ? OPEN_FLAGS | FOPEN_DIRECT_IO : OPEN_FLAGS;
}

/** A path for the handlers' logs: an unlinked node's handle still works, it just has no name. */
function nameOf(ctx: KernelCtx, h: InHeader): string {
  return ctx.nodes.path(h.nodeid) ?? `(node ${h.nodeid}, unlinked)`;
}

export const open: OpHandler<Req<'open'>> = (ctx, h, r) => {
  const path = pathOf(ctx, h);
  if (path === undefined) return;
  ctx.ops.open(path, r.flags, (code: number, fh?: number) => {
    if (code < 0 || fh === undefined) return ctx.fail(h, code < 0 ? code : E.EIO);
    if (!(r.flags & O_TRUNC)) {
      ctx.opened(fh);
      return ctx.send(openReply(h.unique, fh, openFlags(r.flags)));
    }
    ctx.ops.ftruncate(path, fh, 0, (c: number) => {
      if (c >= 0) {
        ctx.opened(fh);
        return ctx.send(openReply(h.unique, fh, openFlags(r.flags)));
      }
      ctx.ops.release(path, fh, () => ctx.fail(h, c));
    });
  });
};

export const create: OpHandler<Req<'create'>> = (ctx, h, r) => {
  const path = childOf(ctx, h, r.name);
  if (path === undefined) return;
  ctx.ops.create(path, r.mode, (code: number, fh?: number) => {
    if (code < 0 || fh === undefined) return ctx.fail(h, code < 0 ? code : E.EIO);
    ctx.ops.getattr(path, (c: number, st?: NodeStat) => {
      if (c < 0 || st === undefined) return ctx.ops.release(path, fh, () => ctx.fail(h, c < 0 ? c : E.EIO));
      ctx.opened(fh);
      ctx.send(createReply(h.unique, ctx.nodes.remember(path), st, ctx.entryValidS, ctx.attrValidS, fh, openFlags(r.flags)));
    });
  });
};

/**
 * READs reach this handler only when the reader thread could not answer them itself (fast-read.ts: a
 * cluster outside the write cache, a clone's inherited one, a change during the read, a big read).
 * The volume layer reads into a reused buffer (read-buffers.ts), which goes to the kernel as it is, after the
 * reply header (writev: no copy), and is reused once the reply is written (the read path writes nothing
 * into it after it answered: read-path.ts).
 */
export const read: OpHandler<Req<'read'>> = (ctx, h, r) => {
  const buf = takeReadBuffer(r.size);
  ctx.ops.read(nameOf(ctx, h), r.fh, buf, r.size, r.offset, (count: number) => {
    if (count < 0) ctx.fail(h, count);
    else if (count === 0) ctx.send(replyHeader(h.unique, 0));
    else ctx.sendv([replyHeader(h.unique, count), buf.subarray(0, count)]);
    giveReadBuffer(buf);
  });
};

/**
 * The data is a view into the request's own buffer (transferred from the reader thread): no copy here. The
 * call may wait for the WRITEs queued behind it (ctx.deferWrite), to go to the volume with them. Once
 * answered, the volume layer holds nothing of it (ops-io.ts: it copies what it keeps), so the buffer goes
 * back to its reader.
 */
export const write: OpHandler<Req<'write'>> = (ctx, h, r) => {
  countWrite(ctx.counters, r.size);
  const path = nameOf(ctx, h);
  // with the WRITEs that come right after it: their clusters go to the write cache in one writev
  ctx.deferWrite(h, r.data, () => ctx.ops.write(path, r.fh, r.data, r.size, r.offset, (count: number) => {
    ctx.recycle(r.data);
    if (count < 0) return ctx.fail(h, count);
    if (!(r.writeFlags & WRITE_KILL_SUIDGID) || ctx.nodes.path(h.nodeid) === undefined) return ctx.send(writeReply(h.unique, count));
    killSuidgid(ctx, path, () => ctx.send(writeReply(h.unique, count)));
  }));
};

export const flush: OpHandler<Req<'flush'>> = (ctx, h, r) => {
  ctx.ops.flush(nameOf(ctx, h), r.fh, (code: number) => (code < 0 ? ctx.fail(h, code) : ctx.send(emptyReply(h.unique))));
};

export const release: OpHandler<Req<'release'>> = (ctx, h, r) => {
  ctx.released(r.fh);
  ctx.ops.release(nameOf(ctx, h), r.fh, (code: number) => (code < 0 ? ctx.fail(h, code) : ctx.send(emptyReply(h.unique))));
};

export const fsync: OpHandler<Req<'fsync'>> = (ctx, h, r) => {
  ctx.ops.fsync(nameOf(ctx, h), r.fsyncFlags & FSYNC_FDATASYNC ? 1 : 0, r.fh, (code: number) => (code < 0 ? ctx.fail(h, code) : ctx.send(emptyReply(h.unique))));
};

export const fallocate: OpHandler<Req<'fallocate'>> = (ctx, h, r) => {
  ctx.ops.fallocate(nameOf(ctx, h), r.fh, r.mode, r.offset, r.length, (code: number) => (code < 0 ? ctx.fail(h, code) : ctx.send(emptyReply(h.unique))));
};

/** Only SEEK_DATA and SEEK_HOLE reach the filesystem (the kernel does SET, CUR and END itself). */
export const lseek: OpHandler<Req<'lseek'>> = (ctx, h, r) => {
  if (r.whence !== SEEK_DATA && r.whence !== SEEK_HOLE) return ctx.fail(h, E.EINVAL);
  if (r.offset < 0) return ctx.fail(h, E.ENXIO);
  ctx.ops.lseek(nameOf(ctx, h), r.fh, r.offset, r.whence === SEEK_DATA ? 'data' : 'hole', (code: number, at?: number) => {
    if (code < 0 || at === undefined) return ctx.fail(h, code < 0 ? code : E.EIO);
    ctx.send(lseekReply(h.unique, at));
  });
};
