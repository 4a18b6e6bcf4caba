/**
 * The DTL server: a TCP listener that keeps, per vDisk, the entries its routers ship (store.ts), and
 * hands them back for recovery. Each connection: Hello (+ the HMAC handshake when a secret is set), then
 * requests answered in order. A malformed, truncated, oversized or unauthenticated frame closes that
 * connection only. Requests on one vDisk are serialised across connections; vDisks are isolated by id.
 * Memory is bounded: a connection stops being read while 8 MiB of its requests wait (each counted with a
 * fixed overhead, so a flood of tiny requests is bounded too), its next request waits while 1 MiB of its
 * replies is unsent, a frame is at most MAX_PAYLOAD, GetEntries reads one segment at a time, at most 1024
 * connections are served, and a peer may send no more than its Auth frame before it has authenticated.
 * A frame begun must be complete, and unsent replies must be taken, within STALL_MS, else the connection
 * is dropped (a stalled or trickling peer frees its memory, and the vDisk lock a GetEntries holds). A
 * connection idle between frames is kept: a bridge may be idle for hours.
 *
 * Fencing (fence.ts): a Register carries its owner (router, registry owner tag, claim epoch), a new owner's
 * recovery sends Fence; each raises the vDisk's fence (persisted before the reply). Requests that change a
 * vDisk's log (AddEntries, Flush, RemoveUpTo, Clear, Unregister) are served only for the owner the connection
 * registered the vDisk with (none: a client from before fencing), and are refused with FENCED once a newer owner
 * has registered or recovered the vDisk here, as is that older owner's Register. Reads (GetScoRange, GetEntries)
 * are never fenced.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { logger } from '../util/log.js';
import { clientMac, macEqual, MAC_BYTES, nonce, NONCE_BYTES, serverMac } from './auth.js';
import { DtlError, WIRE_CODES } from './errors.js';
import { encodeFrame, FrameDecoder, HEADER_BYTES, MAGIC, Msg, TRAILER_BYTES, VERSION, type Frame, type FrameCheck } from './frame.js';
import { checkAddEntriesFrame, checkVdiskId, Reader, Writer } from './messages.js';
import { VDiskLog } from './store.js';
import { describeOwner, FenceBook, NO_OWNER, readOwner, type Owner } from './fence.js';

const log = logger('dtl-server');
/** Bytes of requests waiting on one connection before it stops reading from the socket (memory bound). */
export const MAX_QUEUED_BYTES = 8 * 2 ** 20;
/** What a waiting request costs besides its payload (frame object, closure, promise), as counted against MAX_QUEUED_BYTES. */
export const REQUEST_OVERHEAD = 1024;
/** Bytes of replies the client has not taken above which its next request waits (memory bound). */
export const MAX_UNSENT_BYTES = 1 * 2 ** 20;
/** Connections at once; more are refused (memory bound). */
export const MAX_CONNECTIONS = 1024;
/** A frame begun must be complete (while the connection is read), and unsent replies taken, within this time. */
export const STALL_MS = 30_000;
/** A client must finish the handshake within this time. */
const HANDSHAKE_MS = 10_000;
/** All a peer may send before it has authenticated: the Auth frame (memory bound for unauthenticated peers). */
export const MAX_UNAUTHENTICATED_BYTES = HEADER_BYTES + NONCE_BYTES + MAC_BYTES + TRAILER_BYTES;

export interface DtlServerOptions {
  host: string;
  port: number;
  dir: string;
  /** The shared secret; without one the server only listens on loopback. */
  secret?: Buffer;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export class DtlServer {
  private readonly server: net.Server;
  private readonly logs = new Map<string, VDiskLog>();
  private fences!: FenceBook;
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly sockets = new Set<net.Socket>();
  /** AddEntries frames are verified with their entries, in one pass over the data (messages.ts). */
  private readonly checks = new Map<number, FrameCheck>([[Msg.AddEntries, checkAddEntriesFrame]]);

  private constructor(private readonly opts: DtlServerOptions) {
    this.server = net.createServer((s) => this.accept(s));
  }

  /** Loads what an earlier run left in `dir`, then listens. */
  static async start(opts: DtlServerOptions): Promise<DtlServer> {
    if (opts.secret === undefined && !isLoopback(opts.host)) {
      throw new DtlError('INVALID', `refusing to listen on ${opts.host} without --secret-file: without a shared secret the DTL server only listens on loopback`);
    }
    const s = new DtlServer(opts);
    s.load();
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      s.server.listen(opts.port, opts.host, () => resolve());
    });
    s.server.on('error', (err) => log.error('listener error', { error: String(err) }));
    log.info('DTL server listening', { address: s.address, dir: opts.dir, vdisks: s.logs.size, fences: s.fences.size, auth: opts.secret !== undefined });
    return s;
  }

  get address(): string {
    const a = this.server.address() as net.AddressInfo;
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
    await Promise.all([...this.locks.values()].map((p) => p.catch(() => undefined)));
    for (const l of this.logs.values()) {
      await l.sync().catch(() => undefined);
      l.close();
    }
  }

  private load(): void {
    this.fences = new FenceBook(this.opts.dir, log);
    const root = path.join(this.opts.dir, 'vd');
    fs.mkdirSync(root, { recursive: true });
    for (const id of fs.readdirSync(root)) {
      const l = VDiskLog.load(path.join(root, id), log);
      if (l !== null) this.logs.set(id, l);
    }
  }

  private accept(sock: net.Socket): void {
    const peer = `${sock.remoteAddress}:${sock.remotePort}`;
    if (this.sockets.size >= MAX_CONNECTIONS) {
      log.warn('refusing a DTL connection: too many at once', { peer, max: MAX_CONNECTIONS });
      sock.destroy();
      return;
    }
    this.sockets.add(sock);
    sock.setNoDelay(true);
    const decoder = new FrameDecoder(MAGIC, this.checks);
    const myNonce = nonce();
    let authed = this.opts.secret === undefined;
    let queue: Promise<void> = Promise.resolve();
    let queued = 0;
    let closed = false;
    let paused = false;
    let frameTimer: NodeJS.Timeout | null = null;
    /** vDisk id → the owner this connection registered it with (fence.ts): its changes to the log are checked against the fence. */
    const owners = new Map<string, Owner>();
    const drop = (why: string, fields: Record<string, unknown> = {}) => {
      if (closed) return;
      closed = true;
      log.warn(`closing a DTL connection: ${why}`, { peer, ...fields });
      sock.destroy();
    };
    const timer = authed ? null : setTimeout(() => drop('no handshake in time'), HANDSHAKE_MS).unref();
    // (Re)starts the deadline of a partial frame; none while nothing is pending or while we do not read.
    const watchFrame = () => {
      if (frameTimer !== null) clearTimeout(frameTimer);
      frameTimer = null;
      if (closed || paused || decoder.pending === 0) return;
      frameTimer = setTimeout(() => drop('a frame not completed in time', { received: decoder.pending, ms: STALL_MS }), STALL_MS).unref();
    };
    const pause = () => {
      paused = true;
      sock.pause();
      watchFrame();
    };
    const resume = () => {
      paused = false;
      sock.resume();
      watchFrame();
    };
    sock.on('close', () => {
      closed = true;
      this.sockets.delete(sock);
      if (timer !== null) clearTimeout(timer);
      if (frameTimer !== null) clearTimeout(frameTimer);
    });
    sock.on('error', () => undefined);
    sock.write(encodeFrame(Msg.Hello, 0, new Writer().u8(VERSION).u8(authed ? 0 : 1).raw(myNonce).done()));
    sock.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        return drop((err as Error).message);
      }
      if (frames.length > 0 || frameTimer === null) watchFrame();
      // several requests in one read (a bridge keeps up to 4 AddEntries in flight): their replies, written as
      // the queue runs them (in microtasks unless one waits for the disk), leave in one writev, not one each
      if (frames.length > 1 && !sock.writableCorked) {
        sock.cork();
        setImmediate(() => sock.uncork());
      }
      for (const f of frames) {
        if (closed) return;
        if (!authed) {
          if (f.type !== Msg.Auth || f.payload.length !== NONCE_BYTES + MAC_BYTES) return drop('expected the authentication message first', { type: f.type });
          const theirs = f.payload.subarray(0, NONCE_BYTES);
          if (!macEqual(f.payload.subarray(NONCE_BYTES), clientMac(this.opts.secret!, myNonce, theirs))) {
            log.warn('DTL client refused: wrong secret', { peer });
            sock.end(reply(f.id, 'AUTH', 'wrong secret'));
            closed = true;
            return;
          }
          authed = true;
          if (timer !== null) clearTimeout(timer);
          sock.write(encodeFrame(Msg.AuthOk, f.id, serverMac(this.opts.secret!, theirs, myNonce)));
          continue;
        }
        const size = f.payload.length + REQUEST_OVERHEAD;
        queued += size;
        if (queued >= MAX_QUEUED_BYTES && !paused) pause();
        queue = queue.then(async () => {
          try {
            if (closed) return;
            // a client that does not take its replies stops being served (and, its requests waiting, read)
            if (sock.writableLength > MAX_UNSENT_BYTES && !(await drained(sock, peer))) return;
            await this.handle(f, sock, peer, owners);
          } catch (err) {
            const e = err instanceof DtlError ? err : new DtlError('STORAGE', (err as Error).message);
            if (e.code === 'PROTOCOL') return drop(e.message, { type: f.type });
            log.warn('DTL request failed', { peer, type: f.type, code: e.code, error: e.message });
            if (!closed) sock.write(reply(f.id, e.code, e.message));
          } finally {
            queued -= size;
            if (paused && queued < MAX_QUEUED_BYTES / 2 && !closed) resume();
          }
        });
      }
      if (!authed && decoder.pending > MAX_UNAUTHENTICATED_BYTES) drop('more than an authentication message before authenticating', { received: decoder.pending });
    });
  }

  /** Runs one request; its reply (or replies, for GetEntries) is written to `sock`. */
  private async handle(f: Frame, sock: net.Socket, peer: string, owners: Map<string, Owner>): Promise<void> {
    const r = new Reader(f.payload);
    const id = r.str();
    checkVdiskId(id);
    await this.exclusive(id, async () => {
      const ok = (body?: Writer) => sock.write(encodeFrame(Msg.Reply, f.id, Buffer.concat([Buffer.from([0]), body?.done() ?? Buffer.alloc(0)])));
      // a change to the log: only for an owner the fence still admits
      const mine = (what: string) => this.fences.check(id, owners.get(id) ?? NO_OWNER, what);
      switch (f.type) {
        case Msg.Register: {
          const router = r.str();
          const epoch = r.f64();
          // the owner fields came with fencing: a Register without them is a client from before it
          const owner = r.pos === r.buf.length ? { ...NO_OWNER, router } : readOwner(r, router);
          r.end();
          owners.delete(id);
          const { changed, before } = this.fences.admit(id, owner); // FENCED: an older owner
          if (changed && before !== undefined) log.warn(`vDisk ${id} fenced: ${describeOwner(owner)} registered it; ${describeOwner(before)} and older are refused from now on`, { vdisk: id, owner, before });
          const l = this.logs.get(id);
          if (l === undefined) this.logs.set(id, VDiskLog.create(path.join(this.opts.dir, 'vd', id), router, epoch));
          else l.register(router, epoch);
          owners.set(id, owner);
          log.info('vDisk registered', { vdisk: id, router, epoch, tag: owner.tag, claim: owner.claim });
          return ok();
        }
        case Msg.Fence: {
          const router = r.str();
          const owner = readOwner(r, router);
          r.end();
          if (owner.tag === 0 && owner.claim === 0) throw new DtlError('INVALID', 'a Fence without an owner tag or claim epoch fences nothing');
          const { changed, before } = this.fences.admit(id, owner);
          if (changed) log.warn(`vDisk ${id} fenced: ${describeOwner(owner)} recovered it${before === undefined ? '' : `; ${describeOwner(before)} and older are refused from now on`}`, { vdisk: id, owner, before: before ?? null });
          return ok();
        }
        case Msg.AddEntries: {
          // checked whole by the decoder (checkAddEntriesFrame): every entry sound, exactly `count` of them
          const { at, tags } = f.checked as ReturnType<typeof checkAddEntriesFrame>;
          mine('AddEntries');
          this.need(id).append(f.payload.subarray(at), tags);
          return ok();
        }
        case Msg.Flush:
          r.end();
          mine('Flush');
          await this.need(id).flush();
          return ok();
        case Msg.GetScoRange: {
          r.end();
          const l = this.logs.get(id);
          if (l === undefined) return ok(new Writer().u8(0).f64(0).str('').u32(0).u32(0).f64(0));
          const g = l.range();
          return ok(new Writer().u8(1).f64(g.epoch).str(g.router).u32(g.first).u32(g.last).f64(g.entries));
        }
        case Msg.GetEntries: {
          const from = r.u32();
          r.end();
          for (const { run, count } of this.need(id).entries(from)) {
            if (sock.destroyed) return;
            const more = sock.write(encodeFrame(Msg.Entries, f.id, new Writer().u32(count).raw(run).done()));
            if (!more && !(await drained(sock, peer))) return;
          }
          return ok();
        }
        case Msg.RemoveUpTo: {
          const sco = r.u32();
          r.end();
          mine('RemoveUpTo');
          this.need(id).removeUpTo(sco);
          return ok();
        }
        case Msg.Clear:
          r.end();
          mine('Clear');
          this.need(id).clear();
          return ok();
        case Msg.Unregister: {
          r.end();
          mine('Unregister'); // the fence stays: a zombie must not get back in after the owner dropped its copy
          const l = this.logs.get(id);
          this.logs.delete(id);
          l?.destroy();
          log.info('vDisk unregistered', { vdisk: id });
          return ok();
        }
        default:
          throw new DtlError('PROTOCOL', `unknown message type ${f.type}`);
      }
    });
  }

  private need(id: string): VDiskLog {
    const l = this.logs.get(id);
    if (l === undefined) throw new DtlError('NOT_REGISTERED', `vDisk ${id} is not registered here`, { vdisk: id });
    return l;
  }

  private exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn);
    const tail = run.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return run;
  }
}

/**
 * Resolves true once `sock` has sent what it buffered (call it only after a write returned false), false
 * if it closed first; a peer that takes nothing for STALL_MS is dropped.
 */
function drained(sock: net.Socket, peer: string): Promise<boolean> {
  if (sock.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.off('drain', onDrain);
      sock.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    const timer = setTimeout(() => {
      log.warn('closing a DTL connection: the client does not take its replies', { peer, unsent: sock.writableLength, ms: STALL_MS });
      sock.destroy();
      done(false);
    }, STALL_MS).unref();
    sock.on('drain', onDrain);
    sock.on('close', onClose);
  });
}

function reply(id: number, code: string, message: string): Buffer {
  const status = WIRE_CODES.indexOf(code as never) + 1;
  return encodeFrame(Msg.Reply, id, new Writer().u8(status > 0 ? status : WIRE_CODES.indexOf('STORAGE') + 1).str(message.slice(0, 1000)).done());
}
