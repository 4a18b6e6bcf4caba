/**
 * The router link's server, run by the router that owns a vPool (docs/cluster.md, "Followers"): follower
 * routers send it the FUSE handler calls of their mounts (router-link/follower-table.ts) and it runs them on its
 * own handler table (fuse/handlers.ts: the same code, stop fence and metrics as its own mount), answering each
 * with the handler's result.
 *
 * - Authentication: the DTL's shared-secret handshake (dtl-client/auth.ts, label 'vpoolfs-link'); without a
 *   secret it listens on loopback only.
 * - Handles: a connection may use only the file handles it opened (others: EBADF); the ones still open when it
 *   closes are released (a follower that died leaves nothing open here).
 * - A malformed or oversized frame, a bad payload, a call whose arguments do not fit its signature
 *   (router-link/wire.ts), a wrong secret, or no handshake within 10 s: logged with the peer and the reason,
 *   and that connection (only) is closed. A handler that throws answers EIO. Never a crash.
 * - Memory: a connection stops being read while 256 of its calls run (or 16 MiB of their data waits); before
 *   it authenticated, a peer may send no more than its Auth frame.
 */
import net from 'node:net';
import { clientMac, macEqual, MAC_BYTES, nonce, NONCE_BYTES, serverMac } from '../dtl-client/auth.js';
import { DtlError } from '../dtl-client/errors.js';
import { encodeFrame, encodeFrameParts, FrameDecoder, HEADER_BYTES, TRAILER_BYTES, type Frame } from '../dtl-client/frame.js';
import { isLoopback } from '../dtl-client/server.js';
import { E } from '../fuse/errno.js';
import type { Handlers } from '../fuse/handlers.js';
import { logger } from '../util/log.js';
import { badArgs, decodeMessage, encodeHello, encodeMessage, fhIndex, Link, LINK_LABEL, LINK_MAGIC, opensForWrite, renamedPath } from './wire.js';

const log = logger('router-link');

const HANDSHAKE_MS = 10_000;
const MAX_INFLIGHT = 256;
const MAX_INFLIGHT_BYTES = 16 * 2 ** 20;
const MAX_UNAUTHENTICATED_BYTES = HEADER_BYTES + NONCE_BYTES + MAC_BYTES + TRAILER_BYTES;

export interface LinkServerOptions {
  host: string;
  port: number;
  /** The shared secret; without one the server listens on loopback only. */
  secret?: Buffer;
  router: string;
  vpool: string;
  /** The owner's handler table. */
  ops: Handlers;
  /**
   * The renames made on this router's other tables (its own mount's; router-link/vdisk-routes.ts
   * VDiskRoutes.onRename): the per-handle paths follow them as they follow those made through this link.
   */
  renames?: { onRename(fn: (from: string, to: string) => void): () => void };
}

export class LinkServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private closing = false;
  private unfollow: (() => void) | undefined;
  /** Per connection: the follower's name (from its Ident) and the handles it holds open here, each with its path. */
  private readonly peers = new Map<net.Socket, { router: string; handles: Map<number, string>; readOnly: Set<number> }>();
  /** Calls run for followers since start (metrics). */
  calls = 0;
  /** Connections accepted since start (metrics). */
  accepted = 0;

  private constructor(private readonly opts: LinkServerOptions) {
    this.server = net.createServer((s) => this.accept(s));
  }

  static async start(opts: LinkServerOptions): Promise<LinkServer> {
    if (opts.secret === undefined && !isLoopback(opts.host)) {
      throw new DtlError('INVALID', `refusing to serve the router link on ${opts.host} without --peer-secret-file: without a shared secret it listens on loopback only`);
    }
    const s = new LinkServer(opts);
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      s.server.listen(opts.port, opts.host, () => resolve());
    });
    s.server.on('error', (err) => log.error('router link listener error', { error: String(err) }));
    s.unfollow = opts.renames?.onRename((from, to) => s.renamed(from, to));
    log.info('router link listening', { address: s.address, vpool: opts.vpool, auth: opts.secret !== undefined });
    return s;
  }

  /** HOST:PORT as followers dial it. */
  get address(): string {
    const a = this.server.address() as net.AddressInfo;
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  /** How many followers are connected. */
  get connections(): number {
    return this.sockets.size;
  }

  /**
   * The open handles for writing (opensForWrite) the routers connected here hold, per path (each vDisk), then per router name (from its Ident;
   * '' for one that did not say). The automatic move per vDisk looks at it (tools/daemon/vdisk-automove.ts).
   */
  holdersByPath(): Map<string, Map<string, number>> {
    const out = new Map<string, Map<string, number>>();
    for (const p of this.peers.values()) {
      for (const [fh, path] of p.handles) {
        if (p.readOnly.has(fh)) continue;
        const per = out.get(path) ?? new Map<string, number>();
        per.set(p.router, (per.get(p.router) ?? 0) + 1);
        out.set(path, per);
      }
    }
    return out;
  }

  /**
   * Stops listening and drops every connection: the followers' calls in flight and new ones wait on their side
   * until they find the vPool's next owner (or take it themselves). Called first in a clean stop.
   */
  async close(): Promise<void> {
    this.closing = true;
    this.unfollow?.();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /**
   * A rename through any connection, or on this router's own mount (LinkServerOptions.renames): the handles of
   * every connection on the renamed path (or under it) follow. (A rename through the link whose table is routed
   * — its RoutedTable tells the renames too — comes twice, in the same tick: the second finds nothing to change.)
   */
  private renamed(from: string, to: string): void {
    for (const p of this.peers.values()) {
      for (const [fh, path] of p.handles) p.handles.set(fh, renamedPath(path, from, to));
    }
  }

  private accept(sock: net.Socket): void {
    const peer = `${sock.remoteAddress}:${sock.remotePort}`;
    if (this.closing) {
      sock.destroy();
      return;
    }
    this.sockets.add(sock);
    this.accepted++;
    sock.setNoDelay(true);
    const { ops, secret } = this.opts;
    const decoder = new FrameDecoder(LINK_MAGIC);
    const myNonce = nonce();
    let authed = secret === undefined;
    let closed = false;
    let inflight = 0;
    let inflightBytes = 0;
    let paused = false;
    let corked = false;
    /** The owner's file handles this connection opened, each with its file's path (renames followed). */
    const handles = new Map<number, string>();
    /** Those of them opened read-only (not counted by holdersByPath). */
    const readOnly = new Set<number>();
    const me = { router: '', handles, readOnly };
    this.peers.set(sock, me);
    const drop = (why: string, fields: Record<string, unknown> = {}) => {
      if (closed) return;
      closed = true;
      log.warn(`closing a router link connection: ${why}`, { peer, ...fields });
      sock.destroy();
    };
    const timer = authed ? null : setTimeout(() => drop('no handshake in time'), HANDSHAKE_MS).unref();
    sock.on('close', () => {
      closed = true;
      this.sockets.delete(sock);
      this.peers.delete(sock);
      if (timer !== null) clearTimeout(timer);
      if (handles.size > 0) log.info('a follower went away: releasing the handles it had open', { peer, handles: handles.size });
      for (const fh of handles.keys()) release(fh);
      handles.clear();
    });
    sock.on('error', () => undefined);
    const release = (fh: number) => {
      try {
        ops.release('(router link closed)', fh, () => undefined);
      } catch (err) {
        log.warn('releasing a follower\'s handle failed', { peer, fh, error: String(err) });
      }
    };
    sock.write(encodeFrame(Link.Hello, 0, encodeHello(!authed, myNonce, { router: this.opts.router, vpool: this.opts.vpool }), LINK_MAGIC));
    log.info('a follower connected', { peer, auth: !authed });

    const answer = (f: Frame, op: string, code: number, values: unknown[], args: unknown[]) => {
      if (closed) {
        // the follower is gone: a handle it just opened is nobody's
        if ((op === 'open' || op === 'create') && code >= 0 && typeof values[0] === 'number') release(values[0]);
        return;
      }
      if ((op === 'open' || op === 'create') && code >= 0 && typeof values[0] === 'number') {
        handles.set(values[0], args[0] as string);
        if (op === 'open' && !opensForWrite(args[1] as number)) readOnly.add(values[0]);
      }
      if (op === 'rename' && code >= 0) this.renamed(args[0] as string, args[1] as string);
      let parts: Buffer[];
      try {
        parts = encodeFrameParts(Link.Reply, f.id, encodeMessage(code, values), LINK_MAGIC);
      } catch (err) {
        log.error(`a router link reply to ${op} could not be encoded: EIO`, { peer, error: String(err) });
        parts = encodeFrameParts(Link.Reply, f.id, encodeMessage(E.EIO, []), LINK_MAGIC);
      }
      // the replies of one tick leave in one writev
      if (!corked) {
        corked = true;
        sock.cork();
        process.nextTick(() => {
          corked = false;
          sock.uncork();
        });
      }
      for (const p of parts) sock.write(p);
    };

    const call = (f: Frame) => {
      const [op, args] = decodeMessage(f.payload);
      if (typeof op !== 'string') throw new DtlError('PROTOCOL', 'a call without an operation name');
      const why = badArgs(op, args);
      if (why !== null) throw new DtlError('PROTOCOL', `a bad call: ${why}`);
      const fi = fhIndex(op);
      if (fi >= 0 && !handles.has(args[fi] as number)) return answer(f, op, E.EBADF, [], args);
      if (op === 'release') {
        handles.delete(args[1] as number);
        readOnly.delete(args[1] as number);
      }
      if (op === 'read') args[2] = undefined; // the handler then answers the data as a value
      this.calls++;
      const size = f.payload.length;
      inflight++;
      inflightBytes += size;
      if ((inflight >= MAX_INFLIGHT || inflightBytes >= MAX_INFLIGHT_BYTES) && !paused) {
        paused = true;
        sock.pause();
      }
      let answered = false;
      const cb = (code: number, ...values: unknown[]) => {
        if (answered) return;
        answered = true;
        inflight--;
        inflightBytes -= size;
        if (paused && inflight < MAX_INFLIGHT / 2 && inflightBytes < MAX_INFLIGHT_BYTES / 2 && !closed) {
          paused = false;
          sock.resume();
        }
        answer(f, op, code, values, args);
      };
      if (typeof ops[op] !== 'function') return cb(E.ENOSYS); // a control call this link does not offer
      try {
        ops[op](...args, cb);
      } catch (err) {
        log.error(`a forwarded ${op} failed unexpectedly: EIO`, { peer, error: err instanceof Error ? err.stack : String(err) });
        cb(E.EIO);
      }
    };

    sock.on('data', (chunk: Buffer) => {
      if (closed) return;
      const { frames, error } = decoder.pushSome(chunk);
      for (const f of frames) {
        if (closed) return;
        if (!authed) {
          if (f.type !== Link.Auth || f.payload.length !== NONCE_BYTES + MAC_BYTES) return drop('expected the authentication message first', { type: f.type });
          const theirs = f.payload.subarray(0, NONCE_BYTES);
          if (!macEqual(f.payload.subarray(NONCE_BYTES), clientMac(secret!, myNonce, theirs, LINK_LABEL))) return drop('wrong secret: this peer does not know the router link\'s shared secret');
          authed = true;
          if (timer !== null) clearTimeout(timer);
          sock.write(encodeFrame(Link.AuthOk, f.id, serverMac(secret!, theirs, myNonce, LINK_LABEL), LINK_MAGIC));
          continue;
        }
        if (f.type === Link.Ident && me.router === '') {
          try {
            const who = JSON.parse(f.payload.toString()) as { router?: unknown };
            if (typeof who.router !== 'string' || who.router === '' || who.router.length > 256) throw new Error('no router name');
            me.router = who.router;
          } catch (err) {
            return drop(`a bad Ident message: ${(err as Error).message}`);
          }
          log.info(`the follower at ${peer} is router '${me.router}'`, { peer, router: me.router });
          continue;
        }
        if (f.type !== Link.Call) return drop(`unexpected message type ${f.type}`);
        try {
          call(f);
        } catch (err) {
          return drop((err as Error).message);
        }
      }
      if (error !== null) return drop(error.message);
      if (!authed && decoder.pending > MAX_UNAUTHENTICATED_BYTES) drop('too many bytes before authenticating', { bytes: decoder.pending });
    });
  }
}
