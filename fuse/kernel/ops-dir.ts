/**
 * Kernel-engine opcodes on directories: OPENDIR, READDIR, RELEASEDIR, FSYNCDIR. The listing comes from
 * the readdir handler (names with their NodeStats) when the kernel reads from offset 0, and is kept with
 * the handle (dirs.ts); each READDIR answers as many fuse_dirents as fit from the asked offset.
 */
import type { NodeStat } from '../../volume/types.js';
import type { OpHandler } from './context.js';
import type { decode } from './decode.js';
import { direntsReply, emptyReply, openReply, type Dirent } from './encode.js';
import { pathOf } from './ops-common.js';
import { E } from '../errno.js';

type Req<K extends keyof typeof decode> = ReturnType<(typeof decode)[K]>;

export const opendir: OpHandler<Req<'open'>> = (ctx, h) => {
  const path = pathOf(ctx, h);
  if (path !== undefined) ctx.send(openReply(h.unique, ctx.dirs.open(path), 0));
};

export const readdir: OpHandler<Req<'read'>> = (ctx, h, r) => {
  const dir = ctx.dirs.get(r.fh);
  if (dir === undefined) return ctx.fail(h, E.EBADF);
  if (r.offset > 0 && dir.entries !== undefined) return ctx.send(direntsReply(h.unique, dir.entries, r.offset, r.size));
  ctx.ops.readdir(dir.path, (code: number, names?: string[], stats?: (NodeStat | undefined)[]) => {
    if (code < 0 || names === undefined) return ctx.fail(h, code < 0 ? code : E.EIO);
    const entries: Dirent[] = names.map((name, i) => {
      const st = stats?.[i];
      // '.' and '..' (no stat) are directories; any non-zero inode number will do for them
      return st === undefined ? { name, ino: 1, kind: i < 2 ? 'dir' : 'unknown' } : { name, ino: st.ino, kind: st.kind };
    });
    dir.entries = entries;
    ctx.send(direntsReply(h.unique, entries, r.offset, r.size));
  });
};

export const releasedir: OpHandler<Req<'release'>> = (ctx, h, r) => {
  ctx.dirs.release(r.fh);
  ctx.send(emptyReply(h.unique));
};

export const fsyncdir: OpHandler<Req<'fsync'>> = (ctx, h, r) => {
  const path = ctx.nodes.path(h.nodeid) ?? '/';
  ctx.ops.fsyncdir(path, r.fsyncFlags & 1, r.fh, (code: number) => (code < 0 ? ctx.fail(h, code) : ctx.send(emptyReply(h.unique))));
};
