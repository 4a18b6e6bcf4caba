/**
 * One client connection: the handshake (handshake.ts over handshake-io.ts), then the transmission phase
 * (transmission.ts) on the export it opened. A client that breaks the protocol is logged with the reason
 * and disconnected; nothing it does reaches the other connections or the daemon.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import type { FdTable } from '../fuse/fds.js';
import { logger } from '../util/log.js';
import type { VPool } from '../volume/types.js';
import { negotiate, ProtocolError } from './handshake.js';
import { SocketHandshakeIo } from './handshake-io.js';
import { Transmission } from './transmission.js';

const log = logger('nbd');

/** A client that has not reached the transmission phase after this long is disconnected. */
export const HANDSHAKE_TIMEOUT_MS = 60_000;

export interface ConnectionContext {
  vpool: VPool;
  fds?: FdTable;
  /** Set on listeners that require TLS (STARTTLS). */
  secureContext?: tls.SecureContext;
  /** The listener, for log lines. */
  listener: string;
}

export class Connection {
  private transmission: Transmission | undefined;
  private stopped = false;
  /** Resolves once the connection is over and its export closed. */
  readonly finished: Promise<void>;

  constructor(private readonly socket: net.Socket, private readonly ctx: ConnectionContext) {
    this.finished = this.run();
  }

  private async run(): Promise<void> {
    const socket = this.socket;
    const peer = { listener: this.ctx.listener, remote: socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix' };
    socket.setNoDelay?.(true);
    const io = new SocketHandshakeIo(socket, this.ctx.secureContext);
    const timer = setTimeout(() => {
      log.warn('NBD client did not finish the handshake in time, disconnecting', { ...peer, ms: HANDSHAKE_TIMEOUT_MS });
      io.socket.destroy();
    }, HANDSHAKE_TIMEOUT_MS);
    timer.unref();
    let n;
    try {
      n = await negotiate(io, { vpool: this.ctx.vpool, fds: this.ctx.fds, tls: this.ctx.secureContext ? 'require' : 'none' });
    } catch (err) {
      if (err instanceof ProtocolError) log.warn(`NBD handshake failed: ${err.message}`, peer);
      else log.error('NBD handshake failed', { ...peer, error: err instanceof Error ? err.stack : String(err) });
      io.detach();
      io.socket.destroy();
      return;
    } finally {
      clearTimeout(timer);
    }
    io.detach();
    if (n === undefined) {
      io.socket.end();
      return;
    }
    log.info('NBD client connected', { ...peer, export: n.export.name, size: n.export.size, structured: n.structured, baseAllocation: n.baseAllocation });
    const t = new Transmission(io.socket, io.queue, n, log.child({ ...peer }));
    this.transmission = t;
    if (this.stopped) t.stop();
    await t.finished;
    log.info('NBD client disconnected', { ...peer, export: n.export.name });
  }

  /** The server stops: no more requests; the connection ends once those in flight have answered. */
  stop(): void {
    this.stopped = true;
    if (this.transmission) this.transmission.stop();
    else this.socket.destroy();
  }

  /** Ends it now, requests in flight or not. */
  destroy(): void {
    this.socket.destroy();
  }
}
