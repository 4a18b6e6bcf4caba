/**
 * The only place that knows errnos: maps a VpoolError code to the negative errno FUSE expects, and logs
 * every failure with its cause. Expected misses (a lookup of a missing name, an existing name) are logged
 * at debug so that `ls` and shell globbing stay quiet; everything else at warn, unknown errors at error.
 */
import { VpoolError, type ErrorCode } from '../util/errors.js';
import { logger } from '../util/log.js';

const log = logger('fuse');

/** Linux errno values, negated as FUSE wants them. */
export const E = {
  EPERM: -1,
  ENOENT: -2,
  ENXIO: -6,
  EIO: -5,
  EBADF: -9,
  EACCES: -13,
  EBUSY: -16,
  EEXIST: -17,
  EXDEV: -18,
  ENOTDIR: -20,
  EISDIR: -21,
  EINVAL: -22,
  EFBIG: -27,
  ENOSPC: -28,
  EROFS: -30,
  ERANGE: -34,
  ENAMETOOLONG: -36,
  ENOSYS: -38,
  ENOTEMPTY: -39,
  ENODATA: -61,
  EPROTO: -71,
  ENOTSUP: -95,
} as const;

const byCode: Record<ErrorCode, number> = {
  NOT_FOUND: E.ENOENT,
  EXISTS: E.EEXIST,
  INVALID: E.EINVAL,
  TOO_BIG: E.EFBIG,
  CHECKSUM: E.EIO,
  BACKEND: E.EIO,
  BUSY: E.EBUSY,
  READ_ONLY: E.EROFS,
  NOT_DIR: E.ENOTDIR,
  IS_DIR: E.EISDIR,
  NOT_EMPTY: E.ENOTEMPTY,
  NAME_TOO_LONG: E.ENAMETOOLONG,
  NOT_SUPPORTED: E.ENOTSUP,
  NO_SPACE: E.ENOSPC,
  CLOSED: E.EIO,
  FENCED: E.EIO,
};

const quiet = new Set<ErrorCode>(['NOT_FOUND', 'EXISTS', 'NOT_EMPTY']);

/** The errno for a VpoolError code; EIO for anything unknown. */
export function errnoOf(code: string): number {
  return (byCode as Record<string, number>)[code] ?? E.EIO;
}

/** Maps `err` to a negative errno and logs it with the operation, path and cause. */
export function toErrno(err: unknown, op: string, path: string): number {
  if (err instanceof VpoolError) {
    const errno = errnoOf(err.code);
    const fields = { op, path, code: err.code, errno: -errno, context: err.context, cause: causeOf(err) };
    if (quiet.has(err.code)) log.debug(err.message, fields);
    else log.warn(err.message, fields);
    return errno;
  }
  log.error(`unexpected error in ${op}`, { op, path, errno: -E.EIO, error: err instanceof Error ? err.stack : String(err) });
  return E.EIO;
}

function causeOf(err: Error): string | undefined {
  const cause = (err as { cause?: unknown }).cause;
  if (cause === undefined) return undefined;
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
}
