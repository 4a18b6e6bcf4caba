/**
 * What a failed vDisk operation answers an NBD client: the protocol allows only a few errno values
 * (EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN), so each volume error code maps to
 * the nearest of them.
 */
import { VpoolError } from '../util/errors.js';
import { NBD_ERR } from './protocol.js';

const byCode: Record<string, number> = {
  INVALID: NBD_ERR.EINVAL,
  TOO_BIG: NBD_ERR.ENOSPC,
  NO_SPACE: NBD_ERR.ENOSPC,
  READ_ONLY: NBD_ERR.EPERM,
  NOT_SUPPORTED: NBD_ERR.ENOTSUP,
  CLOSED: NBD_ERR.ESHUTDOWN,
};

/** The NBD error of `err` (EIO for anything not mapped, including non-volume errors). */
export function nbdErrorOf(err: unknown): number {
  if (err instanceof VpoolError) return byCode[err.code] ?? NBD_ERR.EIO;
  return NBD_ERR.EIO;
}

/** The name of an NBD error number, for messages. */
export function nbdErrorName(n: number): string {
  return Object.entries(NBD_ERR).find(([, v]) => v === n)?.[0] ?? `error ${n}`;
}
