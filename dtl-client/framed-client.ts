/**
 * The client end of a framed TCP connection (frame.ts), shared by the DTL's connection (./connection.ts) and
 * the router link's (router-link/client.ts): the socket's frames handed to the handshake while one waits for
 * them, then to the subclass's dispatch; the shared-secret proof of the handshake both ways (auth.ts); request
 * ids; the requests in flight by id; and one failure — a transport error, the other end closing, a malformed
 * frame, or whatever the subclass decides — that destroys the socket and fails the handshake and every request
 * in flight with the same error, none left pending. What differs stays in the subclasses: the Hello's fields,
 * the replies' format and order, timeouts of requests, the errors' wording.
 */
import type net from 'node:net';
import { clientMac, macEqual, MAC_BYTES, nonce, serverMac } from './auth.js';
import { DtlError } from './errors.js';
import { encodeFrame, FrameDecoder, type Frame } from './frame.js';

/** A request in flight: settled by the subclass's dispatch, or rejected when the connection fails. */
export interface InFlight {
  reject(err: Error): void;
  /** Cleared when the connection fails. */
  timer?: NodeJS.Timeout;
}

/** The message types of the handshake's proof (the same in the DTL's and the router link's protocols). */
const AUTH = 2;
const AUTH_OK = 3;

/** Why the transport failed, for the subclass to word as its error. */
export type Lost = { what: 'error'; err: Error } | { what: 'closed' } | { what: 'malformed'; err: DtlError };

export abstract class FramedClient<E extends Error, P extends InFlight> {
  protected readonly pending = new Map<number, P>();
  protected failure: E | null = null;
  private readonly decoder: FrameDecoder;
  private nextId = 1;
  private waitFrame: ((f: Frame | E) => void) | null = null;

  /** `lastId`: the highest request id; ids go round from 1. */
  protected constructor(protected readonly sock: net.Socket, private readonly magic: number, private readonly lastId: number) {
    this.decoder = new FrameDecoder(magic);
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => {
      // the sound frames before a bad one are answers like any other (TCP may deliver them in one read)
      const { frames, error } = this.decoder.pushSome(chunk);
      for (const f of frames) if (this.failure === null) this.route(f);
      if (error !== null) this.fail(this.lost({ what: 'malformed', err: error }));
    });
    sock.on('error', (err) => this.fail(this.lost({ what: 'error', err })));
    sock.on('close', () => this.fail(this.lost({ what: 'closed' })));
  }

  /** The subclass's error for a transport failure. */
  protected abstract lost(why: Lost): E;

  /** A frame after the handshake: a reply (or part of one) to a request in `pending`. */
  protected abstract dispatch(f: Frame): void;

  /** After a failure, once every request in flight was failed. */
  protected abstract closed(err: E): void;

  get alive(): boolean {
    return this.failure === null;
  }

  /** The id of the next request. */
  protected takeId(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= this.lastId ? 1 : this.nextId + 1;
    return id;
  }

  /** The next frame of the handshake; rejects with the failure, `timeout()`'s one if none comes in `timeoutMs`. */
  protected next(timeoutMs: number, timeout: () => E): Promise<Frame> {
    return new Promise((resolve, reject) => {
      if (this.failure !== null) return reject(this.failure);
      const timer = setTimeout(() => this.fail(timeout()), timeoutMs);
      this.waitFrame = (f) => {
        clearTimeout(timer);
        if (f instanceof Error) reject(f);
        else resolve(f);
      };
    });
  }

  /**
   * The handshake's proof of the shared secret both ways, after the server's Hello (`auth`: it wants the proof;
   * `theirs`: its nonce): refused when the two ends disagree on having a secret. `who` names the server in the
   * errors (DtlError AUTH), `hint` says where the secret is configured, `label` the protocol (auth.ts).
   */
  protected async proveSecret(secret: Buffer | undefined, auth: boolean, theirs: Buffer, o: { who: string; timeoutMs: number; timeout: () => E; label?: string; hint?: string; details?: Record<string, unknown> }): Promise<void> {
    if (auth && secret === undefined) throw new DtlError('AUTH', `${o.who} requires a shared secret and none is configured${o.hint ?? ''}`, o.details);
    if (!auth && secret !== undefined) throw new DtlError('AUTH', `${o.who} does not authenticate, but a shared secret is configured: refusing it`, o.details);
    if (secret === undefined) return;
    const mine = nonce();
    this.sock.write(encodeFrame(AUTH, 0, Buffer.concat([mine, clientMac(secret, theirs, mine, o.label)]), this.magic));
    const ans = await this.next(o.timeoutMs, o.timeout);
    if (ans.type !== AUTH_OK || ans.payload.length !== MAC_BYTES) throw new DtlError('AUTH', `${o.who} refused the shared secret`, o.details);
    if (!macEqual(ans.payload, serverMac(secret, mine, theirs, o.label))) throw new DtlError('AUTH', `${o.who} does not know the shared secret`, o.details);
  }

  /** Destroys the connection and fails the handshake and every request in flight with `err` (the first failure wins). */
  protected fail(err: E): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.sock.destroy();
    if (this.waitFrame !== null) {
      const w = this.waitFrame;
      this.waitFrame = null;
      w(err);
    }
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    this.closed(err);
  }

  private route(f: Frame): void {
    if (this.waitFrame !== null) {
      const w = this.waitFrame;
      this.waitFrame = null;
      return w(f);
    }
    this.dispatch(f);
  }
}
