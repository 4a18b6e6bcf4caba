/**
 * The one error class of the DTL (client, server, wire protocol), with stable codes. The volume layer
 * never sees these: a bridge turns every DTL failure into the `degraded` state, never into an I/O error.
 */
export type DtlErrorCode =
  | 'PROTOCOL' // a malformed, truncated, oversized or unchecksummed frame; an unexpected message
  | 'AUTH' // the shared secret did not match (either side), or one side wants it and the other does not
  | 'UNREACHABLE' // no configured server answered, or the connection broke
  | 'TIMEOUT' // a request got no answer in time (the connection is dropped)
  | 'NOT_REGISTERED' // an entry for a vDisk the server does not know
  | 'INVALID' // a bad argument: vDisk id, address, listen address
  | 'STORAGE' // the server could not write or read its files
  | 'FENCED' // the vDisk was registered or recovered at the server by a newer owner: this router lost it (fence.ts)
  | 'CLOSED'; // the client or bridge was closed

export class DtlError extends Error {
  readonly code: DtlErrorCode;
  readonly context: Record<string, unknown>;
  constructor(code: DtlErrorCode, message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DtlError';
    this.code = code;
    this.context = context;
  }
}

/** The codes a server may send back in a reply (index = status byte - 1). */
/** FENCED (6) is new with fencing: a client from before it reads an unknown status as PROTOCOL, with the server's message. */
export const WIRE_CODES: readonly DtlErrorCode[] = ['PROTOCOL', 'AUTH', 'NOT_REGISTERED', 'INVALID', 'STORAGE', 'FENCED'];
