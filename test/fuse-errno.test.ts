/**
 * The VpoolError code → errno table of fuse/errno.ts (the only place that knows errnos), and the
 * xattr namespaces of fuse/xattr.ts.
 */
import test from 'ava';
import { E, errnoOf, toErrno } from '../fuse/errno.js';
import { xattrKind } from '../fuse/xattr.js';
import { VolumeError, type ErrorCode } from '../util/errors.js';
import { rootLogger } from '../util/log.js';

rootLogger.silent = true; // every mapping logs; the table is what is under test here

test('every error code maps to its errno; unknown codes and foreign errors are EIO', (t) => {
  const table: Record<ErrorCode, number> = {
    NOT_FOUND: -2, EXISTS: -17, INVALID: -22, TOO_BIG: -27, CHECKSUM: -5, BACKEND: -5, BUSY: -16, READ_ONLY: -30,
    NOT_DIR: -20, IS_DIR: -21, NOT_EMPTY: -39, NAME_TOO_LONG: -36, NOT_SUPPORTED: -95, NO_SPACE: -28, CLOSED: -5, FENCED: -5,
  };
  for (const [code, errno] of Object.entries(table)) {
    t.is(errnoOf(code), errno, code);
    t.is(toErrno(new VolumeError(code as ErrorCode, 'x'), 'test', '/p'), errno, code);
  }
  t.is(errnoOf('SOMETHING_NEW'), E.EIO);
  t.is(toErrno(new Error('boom'), 'test', '/p'), E.EIO);
  t.is(toErrno('a string', 'test', '/p'), E.EIO);
});

test('xattr namespaces', (t) => {
  t.is(xattrKind('user.color'), 'plain');
  t.is(xattrKind('user.vdiskish'), 'plain');
  t.is(xattrKind('user.vdisk.snapshot'), 'vdisk');
  t.is(xattrKind('security.capability'), 'foreign');
  t.is(xattrKind('trusted.x'), 'foreign');
  t.is(xattrKind('system.posix_acl_access'), 'foreign');
});
