/**
 * Extended attributes. Plain `user.*` names are stored with the node by the VPool. `user.vdisk.*` is the
 * management API of DESIGN §3 (snapshots, clones, info): reserved, ENOTSUP until the snapshot issue
 * implements it. Every other namespace (`security.capability`, which the kernel asks before each write,
 * `trusted.*`, `system.*`) answers ENODATA at once, with no I/O.
 *
 * getxattr/listxattr answer the size probe (size 0 → the length) and a too-small buffer (ERANGE) here,
 * in fuse.ts, because fuse-native gets both wrong.
 */
import type { Cb } from 'fuse-native';
import { logger } from '../util/log.js';
import { E, toErrno } from './errno.js';
import type { OpContext } from './ops-tree.js';

const log = logger('fuse');

const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const VDISK_PREFIX = 'user.vdisk.';

export type XattrKind = 'plain' | 'vdisk' | 'foreign';

export function xattrKind(name: string): XattrKind {
  if (!name.startsWith('user.')) return 'foreign';
  return name.startsWith(VDISK_PREFIX) ? 'vdisk' : 'plain';
}

function notYet(op: string, path: string, name: string): number {
  log.warn(`${name}: the user.vdisk.* attributes are not implemented yet (snapshot issue)`, { op, path, name, errno: -E.ENOTSUP });
  return E.ENOTSUP;
}

export function xattrOps(ctx: OpContext) {
  const { vpool } = ctx;

  return {
    setxattr(path: string, name: string, value: Buffer, _position: number, flags: number, cb: Cb) {
      const kind = xattrKind(name);
      if (kind === 'vdisk') return cb(notYet('setxattr', path, name));
      if (kind === 'foreign') return cb(E.ENOTSUP);
      let p: Promise<void>;
      try {
        if (flags & (XATTR_CREATE | XATTR_REPLACE)) {
          const exists = vpool.getXattr(path, name) !== undefined;
          if (flags & XATTR_CREATE && exists) return cb(E.EEXIST);
          if (flags & XATTR_REPLACE && !exists) return cb(E.ENODATA);
        }
        // fuse-native detaches `value` once we answer: keep a copy.
        p = vpool.setXattr(path, name, Buffer.from(value));
      } catch (err) {
        return cb(toErrno(err, 'setxattr', path));
      }
      p.then(
        () => cb(0),
        (err: unknown) => cb(toErrno(err, 'setxattr', path)),
      );
    },

    /** Answers (0, value) or a negative errno; the caller fits the value into the kernel's buffer. */
    getxattr(path: string, name: string, _position: number, cb: Cb) {
      const kind = xattrKind(name);
      if (kind === 'foreign') return cb(E.ENODATA);
      if (kind === 'vdisk') return cb(notYet('getxattr', path, name));
      try {
        const value = vpool.getXattr(path, name);
        if (value === undefined) return cb(E.ENODATA);
        cb(0, value);
      } catch (err) {
        cb(toErrno(err, 'getxattr', path));
      }
    },

    listxattr(path: string, cb: Cb) {
      try {
        cb(0, vpool.listXattr(path).filter((n) => xattrKind(n) === 'plain'));
      } catch (err) {
        cb(toErrno(err, 'listxattr', path));
      }
    },

    removexattr(path: string, name: string, cb: Cb) {
      const kind = xattrKind(name);
      if (kind === 'vdisk') return cb(notYet('removexattr', path, name));
      if (kind === 'foreign') return cb(E.ENODATA);
      let p: Promise<void>;
      try {
        if (vpool.getXattr(path, name) === undefined) return cb(E.ENODATA);
        p = vpool.removeXattr(path, name);
      } catch (err) {
        return cb(toErrno(err, 'removexattr', path));
      }
      p.then(
        () => cb(0),
        (err: unknown) => cb(toErrno(err, 'removexattr', path)),
      );
    },
  };
}
