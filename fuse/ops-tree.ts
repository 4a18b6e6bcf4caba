/**
 * FUSE handlers for the tree: getattr, readdir, mkdir, rmdir, create/mknod, unlink, rename, statfs,
 * utimens, chmod, chown, access. Each one is a thin call into the VPool; errors go through toErrno.
 * They are engine-agnostic: getattr answers a NodeStat, statfs a StatFs, readdir names (and the children's
 * NodeStats); each engine (fuse/native-mount.ts, fuse/kernel/) encodes them for its side.
 */
import type { Cb } from 'fuse-native';
import type { VPool } from '../volume/types.js';
import { E, toErrno } from './errno.js';
import type { FdTable } from './fds.js';
import { poolStatfs } from './pool-usage.js';

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
/** What libfuse 2 sends for UTIME_NOW / UTIME_OMIT once fuse-native has turned it into ms (tv_sec 0). */
const UTIME_SPECIAL_MS = 2000;

export interface OpContext {
  vpool: VPool;
  fds: FdTable;
  uid: number;
  gid: number;
  /** The `user.vpool.api` answer (fuse/xattr.ts), when the daemon serves a management API. */
  apiInfo?: () => Record<string, unknown>;
}

/** Settles `cb` from a promise: 0 on success, the mapped errno on failure. */
export function settle(p: Promise<unknown>, cb: Cb, op: string, path: string): void {
  p.then(
    () => cb(0),
    (err: unknown) => cb(toErrno(err, op, path)),
  );
}

export function treeOps(ctx: OpContext) {
  const { vpool, fds } = ctx;

  function createFile(path: string, mode: number, cb: Cb, op: string): void {
    let p: Promise<void>;
    try {
      p = vpool.createFile(path, mode & 0o7777, ctx.uid, ctx.gid, 0);
    } catch (err) {
      return cb(toErrno(err, op, path));
    }
    settle(p, cb, op, path);
  }

  return {
    getattr(path: string, cb: Cb) {
      try {
        cb(0, vpool.stat(path));
      } catch (err) {
        cb(toErrno(err, 'getattr', path));
      }
    },

    fgetattr(path: string, fd: number, cb: Cb) {
      try {
        const st = vpool.stat(path);
        const disk = fds.get(fd);
        // An open vDisk knows its own size best (writes in flight may have grown it).
        if (disk !== undefined && st.kind === 'file') {
          cb(0, { ...st, size: disk.size, allocatedBytes: disk.allocatedBytes });
        } else {
          cb(0, st);
        }
      } catch (err) {
        cb(toErrno(err, 'fgetattr', path));
      }
    },

    /** Answers the names ('.' and '..' first) and, for each, its NodeStat when it could be read (undefined for '.', '..' and a name gone meanwhile). */
    readdir(path: string, cb: Cb) {
      try {
        const names = vpool.readdir(path);
        const stats = names.map((n) => {
          try {
            return vpool.stat(path === '/' ? `/${n}` : `${path}/${n}`);
          } catch {
            return undefined;
          }
        });
        cb(0, ['.', '..', ...names], [undefined, undefined, ...stats]);
      } catch (err) {
        cb(toErrno(err, 'readdir', path));
      }
    },

    access(path: string, _mode: number, cb: Cb) {
      try {
        vpool.stat(path);
        cb(0);
      } catch (err) {
        cb(toErrno(err, 'access', path));
      }
    },

    statfs(path: string, cb: Cb) {
      try {
        cb(0, poolStatfs(vpool));
      } catch (err) {
        cb(toErrno(err, 'statfs', path));
      }
    },

    mkdir(path: string, mode: number, cb: Cb) {
      settle(Promise.resolve().then(() => vpool.mkdir(path, mode & 0o7777, ctx.uid, ctx.gid)), cb, 'mkdir', path);
    },

    rmdir(path: string, cb: Cb) {
      settle(Promise.resolve().then(() => vpool.rmdir(path)), cb, 'rmdir', path);
    },

    /** create(2) with O_CREAT: a new empty vDisk, opened. */
    create(path: string, mode: number, cb: Cb) {
      createFile(path, mode, (code) => {
        if (code < 0) return cb(code);
        try {
          cb(0, fds.add(vpool.vdisk(path)));
        } catch (err) {
          cb(toErrno(err, 'create', path));
        }
      }, 'create');
    },

    /** mknod(2): only regular files exist in a vPool. */
    mknod(path: string, mode: number, _dev: number, cb: Cb) {
      if ((mode & S_IFMT) !== S_IFREG && (mode & S_IFMT) !== 0) return cb(E.EPERM);
      createFile(path, mode, cb, 'mknod');
    },

    unlink(path: string, cb: Cb) {
      settle(Promise.resolve().then(() => vpool.unlink(path)), cb, 'unlink', path);
    },

    rename(from: string, to: string, cb: Cb) {
      settle(Promise.resolve().then(() => vpool.rename(from, to)), cb, 'rename', from);
    },

    /**
     * fuse-native passes the access time for both stamps (a bug in its C glue), so both get it.
     * UTIME_NOW arrives as a time under 2 s after the epoch: take it as "now".
     */
    utimens(path: string, atime: number, mtime: number, cb: Cb) {
      const now = Date.now();
      const a = atime < UTIME_SPECIAL_MS ? now : atime;
      const m = mtime < UTIME_SPECIAL_MS ? now : mtime;
      settle(Promise.resolve().then(() => vpool.setAttrs(path, { atimeMs: a, mtimeMs: m })), cb, 'utimens', path);
    },

    chmod(path: string, mode: number, cb: Cb) {
      settle(Promise.resolve().then(() => vpool.setAttrs(path, { mode: mode & 0o7777 })), cb, 'chmod', path);
    },

    chown(path: string, uid: number, gid: number, cb: Cb) {
      const change: { uid?: number; gid?: number } = {};
      if (uid !== 0xffffffff && uid !== -1) change.uid = uid;
      if (gid !== 0xffffffff && gid !== -1) change.gid = gid;
      settle(Promise.resolve().then(() => vpool.setAttrs(path, change)), cb, 'chown', path);
    },

    fsyncdir(_path: string, _datasync: number, _fd: number, cb: Cb) {
      cb(0);
    },
  };
}
