/**
 * The management API's errors: every failure answers JSON `{"error": {code, errno, message, object}}` with
 * - `code`: a stable name, the VpoolError code of util/errors.ts (NOT_FOUND, EXISTS, BUSY …) or one of the
 *   API's own (UNAUTHORIZED, NO_ROUTE, METHOD_NOT_ALLOWED, BAD_REQUEST);
 * - `errno`: the errno name the same refusal gives through the xattrs (EEXIST, ENOENT, EBUSY …);
 * - `message`: one sentence that names the object and the cause ("snapshot create s1 on disk1: snapshot s1
 *   exists already");
 * - `object`: the vPool path (or snapshot) the call was about.
 * HTTP statuses follow the code (404, 409, 400 …) so that plain HTTP clients can branch on them too.
 */
import os from 'node:os';
import { VpoolError } from '../util/errors.js';
import { errnoOf } from '../fuse/errno.js';

const STATUS: Record<string, number> = {
  NOT_FOUND: 404,
  EXISTS: 409,
  INVALID: 400,
  TOO_BIG: 400,
  CHECKSUM: 500,
  BACKEND: 502,
  BUSY: 409,
  READ_ONLY: 409,
  NOT_DIR: 400,
  IS_DIR: 400,
  NOT_EMPTY: 409,
  NAME_TOO_LONG: 400,
  NOT_SUPPORTED: 400,
  NO_SPACE: 507,
  CLOSED: 503,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  NO_ROUTE: 404,
  METHOD_NOT_ALLOWED: 405,
  INTERNAL: 500,
};

/** The API's own codes and the errno each stands for. */
const OWN_ERRNO: Record<string, string> = { BAD_REQUEST: 'EINVAL', UNAUTHORIZED: 'EACCES', NO_ROUTE: 'ENOENT', METHOD_NOT_ALLOWED: 'EINVAL', INTERNAL: 'EIO' };

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

export interface ErrorBody {
  code: string;
  errno: string;
  message: string;
  object: string | null;
}

export class ApiError extends Error {
  readonly status: number;
  readonly body: ErrorBody;
  constructor(code: string, message: string, object: string | null = null) {
    super(message);
    this.status = STATUS[code] ?? 500;
    const errno = OWN_ERRNO[code] ?? ERRNO_NAMES.get(-errnoOf(code)) ?? 'EIO';
    this.body = { code, errno, message, object };
  }
}

/**
 * Turns whatever a handler threw into an ApiError whose sentence starts with `what` (the action and the
 * object: "rollback of disk1 to s1") and goes on with the cause. An unexpected error is INTERNAL, its
 * message kept (the daemon's log has the stack).
 */
export function toApiError(err: unknown, what: string, object: string | null): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof VpoolError) {
    const cause = (err as { cause?: unknown }).cause;
    const extra = cause instanceof Error && !err.message.includes(cause.message) ? ` (${cause.message})` : '';
    return new ApiError(err.code, `${what}: ${err.message}${extra}`, object);
  }
  return new ApiError('INTERNAL', `${what}: unexpected error: ${err instanceof Error ? err.message : String(err)}`, object);
}
