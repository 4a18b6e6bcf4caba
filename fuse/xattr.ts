/**
 * Extended attributes. Plain `user.*` names are stored with the node by the VPool. `user.vdisk.*` is the
 * management API of DESIGN §3 (snapshots, clones, info), dispatched by ./vdisk-xattr.ts; every failure of
 * it is logged at warn with its cause, whatever the errno. Every other namespace (`security.capability`, which the kernel asks before each write,
 * `trusted.*`, `system.*`) answers ENODATA at once, with no I/O.
 *
 * `user.vpool.api` (POOL_API_XATTR) answers on every node, directory or vDisk, with JSON saying where the
 * daemon's management API listens (socket, pid, vPool, mountpoint, version): that is how the CLI goes from a
 * path to the API (tools/client/locate.ts). It is not listed, and cannot be set or removed (ENOTSUP).
 *
 * getxattr/listxattr answer the size probe (size 0 → the length) and a too-small buffer (ERANGE) here,
 * in fuse.ts, because fuse-native gets both wrong.
 */
import type { Cb } from 'fuse-native';
import { logger } from '../util/log.js';
import { E, toErrno } from './errno.js';
import type { OpContext } from './ops-tree.js';
import { readVdiskView, runVdiskCommand, VIEW_NAMES } from './vdisk-xattr.js';

const log = logger('fuse');

const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const VDISK_PREFIX = 'user.vdisk.';
/** Where the management API of the vPool this node is on listens (JSON); see the header. */
export const POOL_API_XATTR = 'user.vpool.api';

export type XattrKind = 'plain' | 'vdisk' | 'pool' | 'foreign';

export function xattrKind(name: string): XattrKind {
  if (!name.startsWith('user.')) return 'foreign';
  if (name === POOL_API_XATTR) return 'pool';
  return name.startsWith(VDISK_PREFIX) ? 'vdisk' : 'plain';
}

/** The errno of a failed `user.vdisk.*` call, logged at warn even for the codes fuse/errno.ts keeps quiet. */
function vdiskErrno(err: unknown, op: string, path: string, name: string): number {
  const errno = toErrno(err, `${op} ${name}`, path);
  log.warn(`${op} ${name} failed`, { path, name, errno: -errno, error: err instanceof Error ? err.message : String(err) });
  return errno;
}

export function xattrOps(ctx: OpContext) {
  const { vpool } = ctx;

  return {
    setxattr(path: string, name: string, value: Buffer, _position: number, flags: number, cb: Cb) {
      const kind = xattrKind(name);
      if (kind === 'vdisk') {
        // fuse-native detaches `value` once we answer: runVdiskCommand decodes it before its first await.
        runVdiskCommand(vpool, path, name, value).then(
          () => {
            log.info(`${name} done`, { path, value: Buffer.from(value).toString('utf8') });
            cb(0);
          },
          (err: unknown) => cb(vdiskErrno(err, 'setxattr', path, name)),
        );
        return;
      }
      if (kind === 'foreign') return cb(E.ENOTSUP);
      if (kind === 'pool') {
        log.warn(`setxattr ${name}: reserved for the daemon (where its management API listens)`, { path, name, errno: -E.ENOTSUP });
        return cb(E.ENOTSUP);
      }
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
      if (kind === 'pool') {
        try {
          vpool.stat(path); // ENOENT for a node gone meanwhile, like any other attribute
        } catch (err) {
          return cb(toErrno(err, 'getxattr', path));
        }
        return ctx.apiInfo ? cb(0, Buffer.from(JSON.stringify(ctx.apiInfo()))) : cb(E.ENODATA);
      }
      if (kind === 'vdisk') {
        readVdiskView(vpool, path, name).then(
          (json) => cb(0, json),
          (err: unknown) => cb(vdiskErrno(err, 'getxattr', path, name)),
        );
        return;
      }
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
        const plain = vpool.listXattr(path).filter((n) => xattrKind(n) === 'plain');
        cb(0, vpool.stat(path).kind === 'file' ? [...VIEW_NAMES, ...plain] : plain);
      } catch (err) {
        cb(toErrno(err, 'listxattr', path));
      }
    },

    removexattr(path: string, name: string, cb: Cb) {
      const kind = xattrKind(name);
      if (kind === 'vdisk') {
        log.warn(`removexattr ${name}: the user.vdisk.* attributes cannot be removed`, { path, name, errno: -E.ENOTSUP });
        return cb(E.ENOTSUP);
      }
      if (kind === 'foreign') return cb(E.ENODATA);
      if (kind === 'pool') return cb(E.ENOTSUP);
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
