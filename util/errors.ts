/**
 * The base of every error vpoolfs raises: a stable `code` (one of the codes below) and the context
 * that explains it. Each layer has its own subclass; the FUSE edge maps codes to errnos (fuse/errno.ts).
 */
export type ErrorCode =
  | 'NOT_FOUND' // a path, vDisk, snapshot or object does not exist
  | 'EXISTS' // something by that name is there already
  | 'INVALID' // a malformed argument: offset, size, name, value
  | 'TOO_BIG' // beyond the maximum size of a vDisk
  | 'CHECKSUM' // stored data failed its checksum: never return it
  | 'BACKEND' // the backend failed (after retries where the caller asked for them)
  | 'BUSY' // in use: open elsewhere, has clones, has children
  | 'READ_ONLY' // a template or read-only vDisk
  | 'NOT_DIR' // a path component is not a directory
  | 'IS_DIR' // a directory where a file was expected
  | 'NOT_EMPTY' // rmdir of a directory with entries
  | 'NAME_TOO_LONG' // a path component over 255 bytes
  | 'NOT_SUPPORTED' // an operation or attribute this build does not know
  | 'NO_SPACE' // a local disk is full
  | 'CLOSED' // the object was closed
  | 'FENCED'; // this router lost its claim on the vPool's backend: another router serves it now

export class VpoolError extends Error {
  readonly code: ErrorCode;
  readonly context: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

export class VolumeError extends VpoolError {}
export class BackendError extends VpoolError {}
export class MetadataError extends VpoolError {}

export function isCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof VpoolError && err.code === code;
}
