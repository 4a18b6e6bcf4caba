/**
 * A follower's connection to the owner's router link (./server.ts): the handshake (the DTL's shared-secret
 * proof both ways, dtl-client/auth.ts), a check that the server serves the vPool this router follows, then
 * calls matched to replies by id, any number in flight. Calls have no timeout of their own: a call waits for
 * the owner for as long as the connection lives; the follower decides when the owner is gone (its registry
 * lease) and closes the connection, which fails every call in flight with LinkDown (they are then run again on
 * the next owner: tools/daemon/follower.ts). A malformed frame or reply also closes it.
 */
import net from 'node:net';
import { clientMac, macEqual, MAC_BYTES, nonce, NONCE_BYTES, serverMac } from '../dtl-client/auth.js';
import { splitHostPort } from '../dtl-client/connection.js';
import { DtlError } from '../dtl-client/errors.js';
import { encodeFrame, encodeFrameParts, FrameDecoder, type Frame } from '../dtl-client/frame.js';
import { decodeHello, decodeMessage, encodeMessage, Link, LINK_LABEL, LINK_MAGIC } from './wire.js';

/** The connection to the owner went away with the call in flight (or before it was sent). */
export class LinkDown extends Error {}

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

export class LinkClient {
  private readonly decoder = new FrameDecoder(LINK_MAGIC);
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private corked = false;
  private failure: Error | null = null;
  private waitFrame: ((f: Frame | Error) => void) | null = null;
  private readonly closeListeners: Array<(why: string) => void> = [];
  /** The router at the other end, from its Hello. */
  router = '';

  private constructor(private readonly sock: net.Socket, readonly address: string) {
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => {
      const { frames, error } = this.decoder.pushSome(chunk);
      for (const f of frames) if (this.failure === null) this.dispatch(f);
      if (error !== null) this.fail(`a malformed frame from ${address}: ${error.message}`);
    });
    sock.on('error', (err) => this.fail(`${address}: ${err.message}`));
    sock.on('close', () => this.fail(`${address} closed the connection`));
  }

  static async connect(opts: LinkClientOptions): Promise<LinkClient> {
    const { host, port } = splitHostPort(opts.address);
    const c = new LinkClient(net.connect({ host, port }), opts.address);
    const timeoutMs = opts.timeoutMs ?? 5000;
    try {
      const hello = await c.next(timeoutMs);
      if (hello.type !== Link.Hello) throw new DtlError('PROTOCOL', `expected Hello from ${opts.address}, got message ${hello.type}`);
      const h = decodeHello(hello.payload, NONCE_BYTES);
      if (h.vpool !== opts.vpool) throw new DtlError('INVALID', `the router link at ${opts.address} serves vPool '${h.vpool}', not '${opts.vpool}'`);
      if (h.auth && opts.secret === undefined) throw new DtlError('AUTH', `the router link at ${opts.address} requires a shared secret and none is configured (--peer-secret-file)`);
      if (!h.auth && opts.secret !== undefined) throw new DtlError('AUTH', `the router link at ${opts.address} does not authenticate, but a shared secret is configured: refusing it`);
      if (opts.secret !== undefined) {
        const mine = nonce();
        c.sock.write(encodeFrame(Link.Auth, 0, Buffer.concat([mine, clientMac(opts.secret, h.nonce, mine, LINK_LABEL)]), LINK_MAGIC));
        const ans = await c.next(timeoutMs);
        if (ans.type !== Link.AuthOk || ans.payload.length !== MAC_BYTES) throw new DtlError('AUTH', `the router link at ${opts.address} refused the shared secret`);
        if (!macEqual(ans.payload, serverMac(opts.secret, mine, h.nonce, LINK_LABEL))) throw new DtlError('AUTH', `the router link at ${opts.address} does not know the shared secret`);
      }
      if (c.failure !== null) throw c.failure;
      if (opts.router !== undefined) c.sock.write(encodeFrame(Link.Ident, 0, Buffer.from(JSON.stringify({ router: opts.router })), LINK_MAGIC));
      c.router = h.router;
      return c;
    } catch (err) {
      c.close();
      throw err;
    }
  }

  get alive(): boolean {
    return this.failure === null;
  }

  /** Runs once when the connection is gone (closed by either side, or broken). */
  onClose(fn: (why: string) => void): void {
    if (this.failure !== null) fn(this.failure.message);
    else this.closeListeners.push(fn);
  }

  /** One handler call on the owner: its code and values; rejects with LinkDown if the connection goes first. */
  call(op: string, args: unknown[]): Promise<{ code: number; values: unknown[] }> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
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
    this.fail(why);
  }

  private dispatch(f: Frame): void {
    if (this.waitFrame !== null) {
      const w = this.waitFrame;
      this.waitFrame = null;
      return w(f);
    }
    const p = this.pending.get(f.id);
    if (f.type !== Link.Reply || p === undefined) return this.fail(`an unexpected message from ${this.address} (type ${f.type}, id ${f.id})`);
    this.pending.delete(f.id);
    let code: unknown;
    let values: unknown[];
    try {
      [code, values] = decodeMessage(f.payload);
    } catch (err) {
      return this.fail((err as Error).message);
    }
    if (typeof code !== 'number' || !Number.isSafeInteger(code)) return this.fail(`a reply without a result code from ${this.address}`);
    p.resolve({ code, values });
  }

  private next(timeoutMs: number): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(`no handshake from ${this.address} within ${timeoutMs} ms`), timeoutMs);
      this.waitFrame = (f) => {
        clearTimeout(timer);
        if (f instanceof Error) reject(f);
        else resolve(f);
      };
    });
  }

  private fail(why: string): void {
    if (this.failure !== null) return;
    this.failure = new LinkDown(`router link: ${why}`);
    this.sock.destroy();
    if (this.waitFrame !== null) {
      const w = this.waitFrame;
      this.waitFrame = null;
      w(this.failure);
    }
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    for (const fn of this.closeListeners.splice(0)) fn(why);
  }
}
