/**
 * One authenticated TCP connection to one DTL server (on ./framed-client.ts): the handshake (auth.ts), then
 * requests matched to replies by id (several may be in flight; the server answers them in order). Any transport or
 * protocol failure (a malformed frame or reply, a reply out of order or to no request, an empty Entries
 * frame), or a request without an answer in `timeoutMs`, destroys the connection and fails every request
 * in flight: none is left pending.
 */
import net from 'node:net';
import { NONCE_BYTES } from './auth.js';
import { DtlError, WIRE_CODES } from './errors.js';
import { FramedClient, type Lost } from './framed-client.js';
import { encodeFrame, encodeFrameParts, MAGIC, Msg, type Frame } from './frame.js';
import { Reader } from './messages.js';

interface Pending {
  resolve(body: Reader): void;
  reject(err: DtlError): void;
  onEntries?: (count: number, run: Buffer) => void;
  timer: NodeJS.Timeout;
}

export class Connection extends FramedClient<DtlError, Pending> {
  onClose: (() => void) | null = null;

  private constructor(sock: net.Socket, readonly server: string, private readonly timeoutMs: number) {
    super(sock, MAGIC, 0xfffffff0);
  }

  /** Connects and completes the handshake (proving `secret` both ways when there is one). */
  static async open(server: string, secret: Buffer | undefined, timeoutMs: number): Promise<Connection> {
    const { host, port } = splitHostPort(server);
    const c = new Connection(net.connect({ host, port }), server, timeoutMs);
    const timeout = (): DtlError => new DtlError('TIMEOUT', `DTL server ${server}: no handshake within ${timeoutMs} ms`, { server });
    try {
      const hello = await c.next(timeoutMs, timeout);
      if (hello.type !== Msg.Hello) throw new DtlError('PROTOCOL', `expected Hello from ${server}, got message ${hello.type}`, { server });
      const r = new Reader(hello.payload);
      r.u8();
      const wantsAuth = (r.u8() & 1) === 1;
      const theirs = r.bytes(NONCE_BYTES);
      await c.proveSecret(secret, wantsAuth, theirs, { who: `DTL server ${server}`, timeoutMs, timeout, details: { server } });
      // what came with the handshake may have broken the connection already (a frame nobody asked for): not connected
      if (c.failure !== null) throw c.failure;
      return c;
    } catch (err) {
      c.close();
      throw err instanceof DtlError ? err : new DtlError('UNREACHABLE', String(err), { server });
    }
  }

  /**
   * Sends one request and resolves with the reply's body (after its status byte). For GetEntries,
   * `onEntries` gets each chunk before the final reply. `crcs`: the known crc32 of parts of `payload` (frame.ts).
   */
  request(type: Msg, payload: Buffer | Buffer[], onEntries?: (count: number, run: Buffer) => void, crcs?: ReadonlyArray<number | undefined>): Promise<Reader> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const id = this.takeId();
    return new Promise<Reader>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new DtlError('TIMEOUT', `DTL server ${this.server} did not answer within ${this.timeoutMs} ms`, { server: this.server })), this.timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, reject, onEntries, timer });
      if (Buffer.isBuffer(payload)) {
        this.sock.write(encodeFrame(type, id, payload));
      } else {
        this.sock.cork();
        for (const part of encodeFrameParts(type, id, payload, undefined, crcs)) this.sock.write(part);
        this.sock.uncork();
      }
    });
  }

  close(): void {
    this.fail(new DtlError('CLOSED', 'the DTL connection was closed', { server: this.server }));
  }

  protected dispatch(f: Frame): void {
    const p = this.pending.get(f.id);
    if (p === undefined) return this.fail(new DtlError('PROTOCOL', `a reply to no request (id ${f.id}, type ${f.type})`, { server: this.server }));
    // the server answers in order: a reply to a later request means it lost or reordered one
    const oldest = this.pending.keys().next().value;
    if (f.id !== oldest) return this.fail(new DtlError('PROTOCOL', `a reply out of order (id ${f.id} before ${oldest})`, { server: this.server }));
    try {
      if (f.type === Msg.Entries) {
        if (p.onEntries === undefined) throw new DtlError('PROTOCOL', 'entries for a request that did not ask for them');
        const r = new Reader(f.payload);
        const count = r.u32();
        // a real server never sends an empty one; a stream of them would keep the request alive for ever
        if (count === 0) throw new DtlError('PROTOCOL', 'an Entries frame without entries');
        p.onEntries(count, f.payload.subarray(r.pos));
        p.timer.refresh();
        return;
      }
      if (f.type !== Msg.Reply) throw new DtlError('PROTOCOL', `unexpected message type ${f.type}`);
      const r = new Reader(f.payload);
      const status = r.u8();
      // parse all of it before the request leaves `pending`: a malformed reply fails it with the connection
      const message = status === 0 ? '' : r.str();
      if (status !== 0) r.end();
      this.pending.delete(f.id);
      clearTimeout(p.timer);
      if (status === 0) return p.resolve(r);
      const code = WIRE_CODES[status - 1] ?? 'PROTOCOL';
      p.reject(new DtlError(code, `DTL server ${this.server}: ${message}`, { server: this.server }));
    } catch (err) {
      this.fail(err instanceof DtlError ? err : new DtlError('PROTOCOL', String(err), { server: this.server }));
    }
  }

  protected lost(why: Lost): DtlError {
    if (why.what === 'malformed') return why.err;
    if (why.what === 'error') return new DtlError('UNREACHABLE', `DTL server ${this.server}: ${why.err.message}`, { server: this.server }, { cause: why.err });
    return new DtlError('UNREACHABLE', `DTL server ${this.server} closed the connection`, { server: this.server });
  }

  protected closed(): void {
    this.onClose?.();
  }
}

export function splitHostPort(s: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new DtlError('INVALID', `expected HOST:PORT, got ${JSON.stringify(s)}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}
