/**
 * The socket side of the handshake (HandshakeIo of handshake.ts): exact reads from a ByteQueue fed by the
 * socket, writes, and the upgrade to TLS after NBD_OPT_STARTTLS. Memory stays bounded against a client that
 * floods options without reading the replies: the socket is paused while more than HIGH_WATER bytes wait
 * to be parsed, and a read waits for the replies to drain first.
 */
import type net from 'node:net';
import tls from 'node:tls';
import { ByteQueue } from './byte-queue.js';
import { ProtocolError, type HandshakeIo } from './handshake.js';

const HIGH_WATER = 256 * 1024;

export class SocketHandshakeIo implements HandshakeIo {
  readonly queue = new ByteQueue();
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;
  private readonly onData = (c: Buffer) => {
    this.queue.push(c);
    if (this.queue.length > HIGH_WATER) this.socket.pause();
    this.wake();
  };
  private readonly onEnd = () => this.fail(new ProtocolError('the client closed the connection during the handshake'));
  private readonly onError = (e: Error) => this.fail(new ProtocolError(`connection error during the handshake: ${e.message}`));

  constructor(public socket: net.Socket, private readonly secureContext: tls.SecureContext | undefined) {
    this.attach();
  }

  private attach(): void {
    this.socket.on('data', this.onData);
    this.socket.on('end', this.onEnd);
    this.socket.on('close', this.onEnd);
    this.socket.on('error', this.onError);
  }

  /** Stops listening (the transmission phase takes the socket and what is left in `queue` over). */
  detach(): void {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
  }

  private fail(e: Error): void {
    this.ended ??= e;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(e);
  }

  private wake(): void {
    const w = this.waiter;
    if (w === undefined || this.queue.length < w.n) return;
    this.waiter = undefined;
    w.resolve(this.take(w.n));
  }

  private take(n: number): Buffer {
    const b = this.queue.take(n)!;
    if (this.queue.length <= HIGH_WATER) this.socket.resume();
    return b;
  }

  async read(n: number): Promise<Buffer> {
    // a client that sends options and never reads the replies waits here, its socket paused
    if (this.socket.writableLength > HIGH_WATER) {
      await new Promise<void>((resolve, reject) => {
        const done = () => {
          this.socket.off('close', closed);
          resolve();
        };
        const closed = () => {
          this.socket.off('drain', done);
          reject(new ProtocolError('the client closed the connection during the handshake'));
        };
        this.socket.once('drain', done);
        this.socket.once('close', closed);
      });
    }
    if (this.queue.length >= n) return this.take(n);
    if (this.ended) throw this.ended;
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.socket.resume();
    });
  }

  write(b: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(b);
  }

  async startTls(): Promise<void> {
    if (this.secureContext === undefined) throw new ProtocolError('STARTTLS without a TLS context');
    // the client must wait for our ACK before its TLS hello: anything already queued breaks the protocol
    if (this.queue.length > 0) throw new ProtocolError('data after NBD_OPT_STARTTLS before the TLS handshake');
    this.detach();
    const plain = this.socket;
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: this.secureContext });
    await new Promise<void>((resolve, reject) => {
      const onErr = (e: Error) => reject(new ProtocolError(`TLS handshake failed: ${e.message}`));
      secure.once('secure', () => {
        secure.off('error', onErr);
        resolve();
      });
      secure.once('error', onErr);
      plain.once('close', () => reject(new ProtocolError('the client closed the connection during the TLS handshake')));
    });
    this.socket = secure;
    this.attach();
  }
}
