/**
 * A follower's connection to the owner's router link (./server.ts), on the DTL's framed client
 * (dtl-client/framed-client.ts): the handshake (the DTL's shared-secret proof both ways, dtl-client/auth.ts), a check that the server serves the vPool this router follows, then
 * calls matched to replies by id, any number in flight. Calls have no timeout of their own: a call waits for
 * the owner for as long as the connection lives; the follower decides when the owner is gone (its registry
 * lease) and closes the connection, which fails every call in flight with LinkDown (they are then run again on
 * the next owner: tools/daemon/follower.ts). A malformed frame or reply also closes it.
 */
import net from 'node:net';
import { NONCE_BYTES } from '../dtl-client/auth.js';
import { splitHostPort } from '../dtl-client/connection.js';
import { DtlError } from '../dtl-client/errors.js';
import { FramedClient, type Lost } from '../dtl-client/framed-client.js';
import { encodeFrame, encodeFrameParts, type Frame } from '../dtl-client/frame.js';
import { decodeHello, decodeMessage, encodeMessage, Link, LINK_LABEL, LINK_MAGIC } from './wire.js';

/** The connection to the owner went away with the call in flight (or before it was sent); `why`: what happened. */
export class LinkDown extends Error {
  constructor(readonly why: string) {
    super(`router link: ${why}`);
  }
}

interface Pending {
  resolve(r: { code: number; values: unknown[] }): void;
  reject(err: Error): void;
}

export interface LinkClientOptions {
  address: string;
  secret?: Buffer;
  /** The vPool this router follows: a server serving another one is refused. */
  vpool: string;
  /** For the connection and handshake only. */
  timeoutMs?: number;
  /** This router's name, told to the owner after the handshake (Ident). */
  router?: string;
}

export class LinkClient extends FramedClient<LinkDown, Pending> {
  private corked = false;
  private readonly closeListeners: Array<(why: string) => void> = [];
  /** The router at the other end, from its Hello. */
  router = '';

  private constructor(sock: net.Socket, readonly address: string) {
    super(sock, LINK_MAGIC, 0xffffffff);
  }

  static async connect(opts: LinkClientOptions): Promise<LinkClient> {
    const { host, port } = splitHostPort(opts.address);
    const c = new LinkClient(net.connect({ host, port }), opts.address);
    const timeoutMs = opts.timeoutMs ?? 5000;
    const timeout = (): LinkDown => new LinkDown(`no handshake from ${opts.address} within ${timeoutMs} ms`);
    try {
      const hello = await c.next(timeoutMs, timeout);
      if (hello.type !== Link.Hello) throw new DtlError('PROTOCOL', `expected Hello from ${opts.address}, got message ${hello.type}`);
      const h = decodeHello(hello.payload, NONCE_BYTES);
      if (h.vpool !== opts.vpool) throw new DtlError('INVALID', `the router link at ${opts.address} serves vPool '${h.vpool}', not '${opts.vpool}'`);
      await c.proveSecret(opts.secret, h.auth, h.nonce, { who: `the router link at ${opts.address}`, timeoutMs, timeout, label: LINK_LABEL, hint: ' (--peer-secret-file)' });
      if (c.failure !== null) throw c.failure;
      if (opts.router !== undefined) c.sock.write(encodeFrame(Link.Ident, 0, Buffer.from(JSON.stringify({ router: opts.router })), LINK_MAGIC));
      c.router = h.router;
      return c;
    } catch (err) {
      c.close();
      throw err;
    }
  }

  /** Runs once when the connection is gone (closed by either side, or broken). */
  onClose(fn: (why: string) => void): void {
    if (this.failure !== null) fn(this.failure.message);
    else this.closeListeners.push(fn);
  }

  /** One handler call on the owner: its code and values; rejects with LinkDown if the connection goes first. */
  call(op: string, args: unknown[]): Promise<{ code: number; values: unknown[] }> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const id = this.takeId();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const parts = encodeFrameParts(Link.Call, id, encodeMessage(op, args), LINK_MAGIC);
      // the calls of one tick leave in one writev (the kernel hands several requests over at once)
      if (!this.corked) {
        this.corked = true;
        this.sock.cork();
        process.nextTick(() => {
          this.corked = false;
          this.sock.uncork();
        });
      }
      for (const p of parts) this.sock.write(p);
    });
  }

  close(why = 'closed by this router'): void {
    this.fail(new LinkDown(why));
  }

  protected dispatch(f: Frame): void {
    const p = this.pending.get(f.id);
    if (f.type !== Link.Reply || p === undefined) return this.fail(new LinkDown(`an unexpected message from ${this.address} (type ${f.type}, id ${f.id})`));
    this.pending.delete(f.id);
    let code: unknown;
    let values: unknown[];
    try {
      [code, values] = decodeMessage(f.payload);
    } catch (err) {
      return this.fail(new LinkDown((err as Error).message));
    }
    if (typeof code !== 'number' || !Number.isSafeInteger(code)) return this.fail(new LinkDown(`a reply without a result code from ${this.address}`));
    p.resolve({ code, values });
  }

  protected lost(why: Lost): LinkDown {
    if (why.what === 'malformed') return new LinkDown(`a malformed frame from ${this.address}: ${why.err.message}`);
    if (why.what === 'error') return new LinkDown(`${this.address}: ${why.err.message}`);
    return new LinkDown(`${this.address} closed the connection`);
  }

  protected closed(err: LinkDown): void {
    for (const fn of this.closeListeners.splice(0)) fn(err.why);
  }
}
