/**
 * A fake DTL server for the client fuzz tests (test/dtl-client-fuzz.test.ts): a net.Server on 127.0.0.1
 * that hands every connection to a script, which answers the client however the test wants — valid
 * frames, damaged ones, silence, or a relay to a real server that turns bad at some point. The client's
 * frames come out of `next()` in order; the encoders build what a real server sends. A script that
 * throws is recorded in `errors` (the test checks it stays empty) and its connection dropped. Every
 * socket and the listener are closed at teardown.
 */
import type { ExecutionContext } from 'ava';
import net from 'node:net';
import { encodeFrame, FrameDecoder, Msg, type Frame } from '../../dtl-client/frame.js';
import { Writer } from '../../dtl-client/messages.js';

/** One client connection as the fake server sees it. */
export class FakeConn {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Frame[] = [];
  private wake: (() => void) | null = null;
  closed = false;
  /** Bytes the client sent; bytes this side's writes got into the kernel (their callbacks ran without error). */
  bytesIn = 0;
  bytesOut = 0;

  constructor(readonly sock: net.Socket, readonly index: number) {
    sock.on('error', () => undefined);
    sock.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      try {
        this.frames.push(...this.decoder.push(chunk));
      } catch {
        sock.destroy(); // the client never sends a bad frame; if it did, the test's outcome shows it
      }
      this.poke();
    });
    sock.on('close', () => {
      this.closed = true;
      this.poke();
    });
  }

  /** The client's next frame, or null once the connection is gone. */
  async next(): Promise<Frame | null> {
    for (;;) {
      const f = this.frames.shift();
      if (f !== undefined) return f;
      if (this.closed) return null;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** Writes raw bytes (nothing once the socket is gone); resolves once they are in the kernel or failed. */
  send(b: Buffer): Promise<boolean> {
    if (this.sock.destroyed) return Promise.resolve(false);
    return new Promise((resolve) => this.sock.write(b, (err) => {
      if (!err) this.bytesOut += b.length;
      resolve(!err);
    }));
  }

  /** Resolves when the client has closed the connection (or it broke). */
  gone(): Promise<void> {
    return this.closed ? Promise.resolve() : new Promise((r) => this.sock.once('close', () => r()));
  }

  close(): void {
    this.sock.destroy();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}

export type Script = (c: FakeConn) => unknown;

export class FakeDtlServer {
  readonly conns: FakeConn[] = [];
  readonly errors: string[] = [];
  private listening = true;

  private constructor(private readonly server: net.Server) {}

  static async start(t: ExecutionContext, script: Script): Promise<FakeDtlServer> {
    const server = net.createServer();
    const fake = new FakeDtlServer(server);
    server.on('connection', (sock) => {
      const c = new FakeConn(sock, fake.conns.length);
      fake.conns.push(c);
      Promise.resolve().then(() => script(c)).catch((err: Error) => {
        if (!c.closed) fake.errors.push(`connection ${c.index}: ${err.stack ?? String(err)}`);
        c.close();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    t.teardown(() => fake.stop());
    return fake;
  }

  get address(): string {
    return `127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  /** Stops listening (new connections are refused) and drops every connection. */
  async stop(): Promise<void> {
    if (this.listening) {
      this.listening = false;
      const closed = new Promise<void>((r) => this.server.close(() => r()));
      for (const c of this.conns) c.close();
      await closed;
    }
  }
}

// ---- what a real server sends ----------------------------------------------------------------------

export function helloFrame(flags = 0, nonce: Buffer = Buffer.alloc(32, 0x5a)): Buffer {
  return encodeFrame(Msg.Hello, 0, new Writer().u8(1).u8(flags).raw(nonce).done());
}

/** A Reply: status 0 and `body`, or an error status and its message. */
export function replyFrame(id: number, body: Buffer = Buffer.alloc(0), status = 0): Buffer {
  return encodeFrame(Msg.Reply, id, Buffer.concat([Buffer.from([status]), body]));
}

export function errorReply(id: number, status: number, message: string): Buffer {
  return encodeFrame(Msg.Reply, id, new Writer().u8(status).str(message).done());
}

/** The body of a GetScoRange reply. */
export function rangeBody(r: { registered?: boolean; epoch: number; router?: string; first: number; last: number; entries: number }): Buffer {
  return new Writer().u8(r.registered === false ? 0 : 1).f64(r.epoch).str(r.router ?? 'fake').u32(r.first).u32(r.last).f64(r.entries).done();
}

/** An Entries frame: `count` then the records (count defaults to the number of records). */
export function entriesFrame(id: number, records: Buffer[], count = records.length): Buffer {
  return encodeFrame(Msg.Entries, id, new Writer().u32(count).raw(Buffer.concat(records)).done());
}

/** Relays the connection to a real server: client bytes go through as they are; each whole frame from
 *  the server goes to `onFrame`, which forwards it (returns true) or does something else (false: the relay
 *  stops forwarding the server's side from then on). */
export function relay(c: FakeConn, real: string, onFrame: (f: Frame, raw: Buffer) => Promise<boolean> | boolean): void {
  const [host, port] = real.split(':');
  const up = net.connect({ host, port: Number(port) });
  const dec = new FrameDecoder();
  let forwarding = true;
  let chain: Promise<unknown> = Promise.resolve();
  up.on('error', () => c.close());
  up.on('close', () => c.close());
  c.sock.on('close', () => up.destroy());
  c.sock.on('data', (chunk: Buffer) => up.write(chunk));
  up.on('data', (chunk: Buffer) => {
    let frames: Frame[];
    try {
      frames = dec.push(chunk);
    } catch {
      c.close();
      return;
    }
    for (const f of frames) {
      chain = chain.then(async () => {
        if (!forwarding) return;
        const raw = encodeFrame(f.type, f.id, f.payload);
        if (await onFrame(f, raw)) await c.send(raw);
        else forwarding = false;
      });
    }
  });
}
