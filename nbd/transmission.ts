/**
 * The transmission phase of one NBD connection: requests are parsed as bytes arrive, each is started at
 * once (several in flight, answered in whatever order they finish), and every reply is one socket write.
 *
 * Bounded memory whatever the client does: no new request is parsed while MAX_INFLIGHT requests or
 * MAX_INFLIGHT_BYTES of payload are in flight, or while more than MAX_UNSENT reply bytes wait in the
 * socket (a client that never reads); the socket is paused meanwhile, so the kernel's buffers hold the rest.
 *
 * A request that breaks the framing (bad magic, an unknown command, a payload over MAX_PAYLOAD) gets an
 * error reply where one is possible, is logged, and closes the connection once the requests in flight have
 * answered. A request that is well framed but wrong (past the export, flags not allowed, a command not
 * negotiated) gets an error reply and the connection goes on.
 */
import type net from 'node:net';
import type { Logger } from '../util/log.js';
import type { ByteQueue } from './byte-queue.js';
import { nbdErrorName, nbdErrorOf } from './errors.js';
import type { Negotiated } from './handshake.js';
import { BASE_ALLOCATION_ID, CMD, CMDFLAG, MAX_PAYLOAD, NBD_ERR, REQUEST_SIZE } from './protocol.js';
import { blockStatusChunk, decodeRequest, errorChunk, noneChunk, readChunk, readSimple, simpleReply, type Request } from './wire.js';

const MAX_INFLIGHT = 64;
const MAX_INFLIGHT_BYTES = 64 * 2 ** 20;
const MAX_UNSENT = 8 * 2 ** 20;
/** Extents per BLOCK_STATUS reply at most (8 bytes each). */
const MAX_EXTENTS = 4096;
/** After the last reply of a closing connection, how long a client that does not read may keep it. */
const END_GRACE_MS = 5000;

const CMD_NAMES: Record<number, string> = Object.fromEntries(Object.entries(CMD).map(([k, v]) => [v, k]));

/** The flags each command may carry. */
const ALLOWED_FLAGS: Record<number, number> = {
  [CMD.READ]: CMDFLAG.DF, // one chunk per read anyway: "don't fragment" always holds
  [CMD.WRITE]: CMDFLAG.FUA,
  [CMD.FLUSH]: 0,
  [CMD.TRIM]: CMDFLAG.FUA,
  [CMD.WRITE_ZEROES]: CMDFLAG.FUA | CMDFLAG.NO_HOLE,
  [CMD.BLOCK_STATUS]: CMDFLAG.REQ_ONE,
  [CMD.DISC]: 0,
};

export class Transmission {
  private inflight = 0;
  private inflightBytes = 0;
  /** A header whose WRITE payload has not fully arrived. */
  private pending: Request | undefined;
  /** No more requests are parsed (DISC, a protocol error, a server stop). */
  private closing = false;
  private closed = false;
  private readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly e;

  constructor(
    private readonly socket: net.Socket,
    private readonly queue: ByteQueue,
    private readonly n: Negotiated,
    private readonly log: Logger,
  ) {
    this.e = n.export;
    this.done = new Promise((r) => (this.resolveDone = r));
    socket.on('data', (c: Buffer) => {
      if (this.closing) return;
      this.queue.push(c);
      this.pump();
    });
    socket.on('drain', () => this.pump());
    socket.on('error', (err) => this.log.info('NBD connection error', { error: err.message }));
    socket.on('close', () => this.stop());
    socket.resume();
    this.pump();
  }

  /** Resolves once the connection is closed and no request is in flight (the export is closed then). */
  get finished(): Promise<void> {
    return this.done;
  }

  /** Stops reading requests; the connection ends once those in flight have answered. */
  stop(): void {
    this.closing = true;
    this.socket.pause();
    this.maybeEnd();
  }

  private overLimits(): boolean {
    return this.inflight >= MAX_INFLIGHT || this.inflightBytes >= MAX_INFLIGHT_BYTES || this.socket.writableLength > MAX_UNSENT;
  }

  private pump(): void {
    while (!this.closing) {
      if (this.pending === undefined) {
        if (this.overLimits()) break;
        const h = this.queue.take(REQUEST_SIZE);
        if (h === undefined) break;
        const req = decodeRequest(h);
        if (!req.magicOk) return this.protocolError(undefined, 'bad request magic');
        if (req.type === CMD.WRITE) {
          if (req.length > MAX_PAYLOAD) return this.protocolError(req, `a write of ${req.length} bytes is more than the ${MAX_PAYLOAD} accepted`);
          this.pending = req;
        } else {
          this.dispatch(req, undefined);
          continue;
        }
      }
      const payload = this.queue.take(this.pending.length);
      if (payload === undefined) break;
      const req = this.pending;
      this.pending = undefined;
      this.dispatch(req, payload);
    }
    if (this.closing) return;
    // keep reading while a write's payload is still arriving; otherwise pause at the limits
    if (this.pending === undefined && this.overLimits()) this.socket.pause();
    else this.socket.resume();
  }

  private dispatch(req: Request, payload: Buffer | undefined): void {
    const name = CMD_NAMES[req.type];
    const allowed = ALLOWED_FLAGS[req.type];
    if (name === undefined || allowed === undefined) {
      return this.protocolError(req, `unknown or unsupported command ${req.type}`);
    }
    if (req.type === CMD.DISC) {
      this.log.debug('NBD client disconnects', { export: this.e.name });
      return this.stop();
    }
    if (req.flags & ~allowed) return this.refuse(req, NBD_ERR.EINVAL, `flags 0x${req.flags.toString(16)} not allowed on ${name}`);
    if (req.type === CMD.READ && req.length > MAX_PAYLOAD) {
      return this.protocolError(req, `a read of ${req.length} bytes is more than the ${MAX_PAYLOAD} accepted`);
    }
    const ranged = req.type !== CMD.FLUSH;
    if (ranged && req.offset + req.length > this.e.size) {
      const err = req.type === CMD.READ || req.type === CMD.BLOCK_STATUS ? NBD_ERR.EINVAL : NBD_ERR.ENOSPC;
      return this.refuse(req, err, `${name} of ${req.length} bytes at ${req.offset} is past the end of the export (${this.e.size} bytes)`);
    }
    const writes = req.type === CMD.WRITE || req.type === CMD.WRITE_ZEROES || req.type === CMD.TRIM;
    if (writes && this.e.readOnly) return this.refuse(req, NBD_ERR.EPERM, `${this.e.name} is read-only (a template)`);
    if (req.type === CMD.TRIM && !this.e.canTrim) return this.refuse(req, NBD_ERR.EINVAL, 'TRIM was not advertised: this vPool has no discard yet');
    if (req.type === CMD.BLOCK_STATUS && !this.n.baseAllocation) {
      return this.refuse(req, NBD_ERR.EINVAL, 'BLOCK_STATUS without base:allocation selected (NBD_OPT_SET_META_CONTEXT)');
    }
    if (req.type === CMD.BLOCK_STATUS && req.length === 0) return this.refuse(req, NBD_ERR.EINVAL, 'BLOCK_STATUS of 0 bytes');
    const bytes = req.type === CMD.READ ? req.length : payload?.length ?? 0;
    this.inflight++;
    this.inflightBytes += bytes;
    let p: Promise<Buffer | void>;
    try {
      p = this.run(req, payload);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (reply) => this.answer(bytes, reply ?? this.ok(req)),
      (err: unknown) => {
        const code = nbdErrorOf(err);
        this.log.warn(`NBD ${name} failed`, { export: this.e.name, offset: req.offset, length: req.length, nbdError: nbdErrorName(code), error: String(err) });
        this.answer(bytes, this.errorReply(req, code, `${name}: ${err instanceof Error ? err.message : String(err)}`));
      },
    );
  }

  /** Runs one request against the export; resolves with its reply frame, or nothing for a plain success. */
  private async run(req: Request, payload: Buffer | undefined): Promise<Buffer | void> {
    const fua = (req.flags & CMDFLAG.FUA) !== 0;
    switch (req.type) {
      case CMD.READ: {
        if (req.length === 0) return; // no OFFSET_DATA chunk of no data: a plain success
        const { frame, data } = this.n.structured ? readChunk(req, req.length) : readSimple(req, req.length);
        await this.e.read(data, req.offset);
        return frame;
      }
      case CMD.WRITE:
        if (req.length > 0) await this.e.write(req.offset, payload!, fua);
        return;
      case CMD.FLUSH:
        return this.e.flush();
      case CMD.WRITE_ZEROES:
        if (req.length > 0) await this.e.zeroes(req.offset, req.length, (req.flags & CMDFLAG.NO_HOLE) !== 0, fua);
        return;
      case CMD.TRIM:
        return this.e.trim(req.offset, req.length);
      case CMD.BLOCK_STATUS: {
        const one = (req.flags & CMDFLAG.REQ_ONE) !== 0;
        const extents = this.e.blockStatus(req.offset, req.length, one ? 1 : MAX_EXTENTS);
        return blockStatusChunk(req, BASE_ALLOCATION_ID, extents, true);
      }
    }
  }

  private ok(req: Request): Buffer {
    return this.n.structured ? noneChunk(req) : simpleReply(0, req);
  }

  private errorReply(req: Request, code: number, message: string): Buffer {
    return this.n.structured ? errorChunk(req, code, message) : simpleReply(code, req);
  }

  /** A well-framed request refused: its error reply, and the connection goes on. */
  private refuse(req: Request, code: number, message: string): void {
    this.log.info(`NBD request refused: ${message}`, { export: this.e.name, nbdError: nbdErrorName(code) });
    this.send(this.errorReply(req, code, message));
  }

  /** The framing is broken: an error reply if there is a request to answer, then the connection closes. */
  private protocolError(req: Request | undefined, message: string): void {
    this.log.warn(`NBD protocol error, closing the connection: ${message}`, { export: this.e.name, remote: this.socket.remoteAddress ?? 'unix' });
    if (req) this.send(this.errorReply(req, NBD_ERR.EINVAL, message));
    this.stop();
  }

  private answer(bytes: number, frame: Buffer): void {
    this.inflight--;
    this.inflightBytes -= bytes;
    this.send(frame);
    if (this.closing) this.maybeEnd();
    else this.pump();
  }

  private send(frame: Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(frame);
  }

  private maybeEnd(): void {
    if (this.inflight > 0 || this.closed) return;
    this.closed = true;
    this.e.close();
    if (!this.socket.destroyed) {
      this.socket.end();
      setTimeout(() => this.socket.destroy(), END_GRACE_MS).unref();
    }
    this.resolveDone();
  }
}
