/**
 * A FUSE session on an open /dev/fuse descriptor: reader threads (reader.ts) receive the requests, the
 * main thread dispatches each through the opcode table (opcodes.ts) to the handlers and writes the reply
 * with one writeSync. Unknown opcodes answer ENOSYS, malformed requests EINVAL, a handler that throws
 * EIO: never a hang. A reply the kernel refuses with ENOENT (the request was interrupted and dropped) is
 * ignored. The session ends when every reader has seen the device end (ENODEV after an unmount).
 * READs the readers can prove they may answer from the write cache never reach the main thread: the session
 * publishes to them each open vDisk's view (volume/datapath/write-cache/reader-view.ts) and which handle reads which
 * (fast-read.ts). WRITEs that arrive while more requests wait are held and handed to the volume together,
 * when none waits any more, at the end of the turn, or before any other request (write-gather.ts: one
 * writev for their clusters).
 */
import fs from 'node:fs';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { logger } from '../../util/log.js';
import { E } from '../errno.js';
import type { Handlers } from '../handlers.js';
import type { KernelCtx } from './context.js';
import { C, newCounters, opName, summary } from './counters.js';
import { decodeHeader, type InHeader } from './decode.js';
import { DirHandles } from './dirs.js';
import { errorReply, notifyInvalInode } from './encode.js';
import { Nodes } from './nodes.js';
import type { FdTable } from '../fds.js';
import { VIEW, VIEW_CLOSED, type ReaderView } from '../../volume/datapath/write-cache/reader-view.js';
import type { ReaderMessage } from './fast-read.js';
import { OPCODES } from './opcodes.js';
import { adoptWriteCrcs } from './write-crcs.js';
import { Op } from './protocol.js';
import { gatherWrites } from '../../volume/vdisk/write-gather.js';

const log = logger('fuse');

/** Two readers: one can sit in read() while the other hands a request over (DESIGN: matched libfuse3). */
export const READERS = 2;

export class Session implements KernelCtx {
  readonly nodes = new Nodes();
  readonly dirs = new DirHandles();
  readonly counters = newCounters();
  readonly entryValidS = 1;
  readonly attrValidS = 1;
  /** Resolves with INIT's summary once the kernel has its answer. */
  readonly initialized: Promise<Record<string, unknown>>;
  /** Resolves with the reason once every reader has stopped (ENODEV: unmounted). */
  readonly ended: Promise<string>;
  private resolveInit!: (s: Record<string, unknown>) => void;
  private resolveEnded!: (why: string) => void;
  private readonly workers: Worker[] = [];
  /** The read buffers of big writes being handled, and the port back to the reader that read each. */
  private readonly owners = new Map<ArrayBuffer, MessagePort>();
  private running = 0;
  /** The port to each reader for views (fast-read.ts). */
  private readonly viewPorts: MessagePort[] = [];
  /** The views the readers have, by id, and how to stop hearing of their changes. */
  private readonly subscribed = new Map<number, () => void>();
  /** WRITEs of this loop turn not yet handed to the volume (deferWrite). */
  private deferred: Array<{ h: InHeader; request: Uint8Array; run: () => void }> = [];
  /** Requests taken from the readers' messages (C.POSTED counts those posted; int32, wrapping alike). */
  private taken = 0;

  constructor(
    readonly fd: number,
    readonly ops: Handlers,
    readonly debug: boolean,
    /** The open-file table: without it (tests) every READ goes to the main thread. */
    private readonly fds?: FdTable,
  ) {
    this.initialized = new Promise((r) => (this.resolveInit = r));
    this.ended = new Promise((r) => (this.resolveEnded = r));
  }

  /** Starts the reader threads (after mount(2): before it, the device refuses reads). */
  start(readers = READERS): void {
    for (let i = 0; i < readers; i++) {
      const { port1: back, port2: recycled } = new MessageChannel();
      back.unref();
      const { port1: viewPort, port2: views } = new MessageChannel();
      viewPort.unref();
      this.viewPorts.push(viewPort);
      const w = new Worker(new URL('./reader.js', import.meta.url), {
        workerData: { fd: this.fd, counters: this.counters, recycled, views }, transferList: [recycled, views],
      });
      this.running++;
      let done = false;
      const end = (why: string) => {
        if (done) return;
        done = true;
        if (--this.running === 0) {
          for (const stop of this.subscribed.values()) stop();
          this.subscribed.clear();
          this.resolveEnded(why);
        }
      };
      w.on('message', (m: [ArrayBuffer, number, boolean, number] | { end: string }) => {
        if (Array.isArray(m)) {
          if (m[2]) this.owners.set(m[0], back);
          this.taken = (this.taken + 1) | 0;
          const req = Buffer.from(m[0], 0, m[1]);
          if (m[3] !== 0) adoptWriteCrcs(req, m[3]); // a WRITE's cluster crcs, computed in the reader
          this.dispatch(req);
        }
        else end(m.end);
      });
      w.on('error', (err) => {
        log.error('a FUSE reader thread failed', { error: err.stack ?? String(err) });
        end('reader failed');
      });
      w.on('exit', () => end('reader exited'));
      this.workers.push(w);
    }
  }

  /** Lets the process exit while readers still block in read() (a lazy unmount with files still open). */
  unref(): void {
    for (const w of this.workers) w.unref();
  }

  /** One request, as read from the device. */
  dispatch(b: Buffer): void {
    let h: InHeader;
    try {
      h = decodeHeader(b);
    } catch (err) {
      log.error('a FUSE request too short for its header: ignored', { bytes: b.length, error: String(err) });
      return;
    }
    // anything but a WRITE reaches the volume after the WRITEs read before it, as if none had waited
    if (this.deferred.length > 0 && h.opcode !== Op.WRITE) this.flushWrites();
    const entry = OPCODES.get(h.opcode);
    if (entry === undefined) {
      Atomics.add(this.counters, C.UNKNOWN_OPCODE, 1);
      log.debug('FUSE opcode not implemented: ENOSYS', { opcode: h.opcode, op: opName(h.opcode) });
      return this.fail(h, E.ENOSYS);
    }
    if (this.debug) log.debug('FUSE request', { op: entry.name, unique: h.unique, nodeid: h.nodeid, len: h.len });
    let req: unknown;
    try {
      req = entry.decode(b);
    } catch (err) {
      this.owners.delete(b.buffer as ArrayBuffer); // never recycled: dropped (a malformed request is rare)
      log.warn('a malformed FUSE request: EINVAL', { op: entry.name, bytes: b.length, error: String(err) });
      if (entry.reply) this.fail(h, E.EINVAL);
      return;
    }
    try {
      entry.handle(this, h, req);
    } catch (err) {
      this.owners.delete(b.buffer as ArrayBuffer); // its answer may still come later: then recycle finds nothing
      log.error(`FUSE ${entry.name} failed unexpectedly: EIO`, { unique: h.unique, nodeid: h.nodeid, error: err instanceof Error ? err.stack : String(err) });
      if (entry.reply) this.fail(h, E.EIO);
    }
  }

  send(reply: Buffer): void {
    try {
      fs.writeSync(this.fd, reply);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      Atomics.add(this.counters, C.REPLIES_DROPPED, 1);
      // ENOENT: the kernel no longer waits for this request (interrupted); ENODEV: unmounted meanwhile
      if (code !== 'ENOENT' && code !== 'ENODEV') log.warn('writing a FUSE reply failed', { code, bytes: reply.length, unique: reply.length >= 16 ? reply.readUInt32LE(8) : undefined });
    }
  }

  sendv(parts: Buffer[]): void {
    try {
      fs.writevSync(this.fd, parts);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      Atomics.add(this.counters, C.REPLIES_DROPPED, 1);
      if (code !== 'ENOENT' && code !== 'ENODEV') log.warn('writing a FUSE reply failed', { code, parts: parts.length });
    }
  }

  /**
   * Holds the WRITE while more requests wait for the main thread (posted by the readers, not yet taken: they
   * come in this turn, most likely); with none waiting, hands it to the volume at once with those held before
   * it. At depth 1 nothing is ever held. A held WRITE goes at the end of the turn at the latest (setImmediate:
   * the requests counted may come only in the next turn).
   */
  deferWrite(h: InHeader, request: Uint8Array, run: () => void): void {
    this.deferred.push({ h, request, run });
    if (((Atomics.load(this.counters, C.POSTED) - this.taken) | 0) <= 0) return this.flushWrites();
    if (this.deferred.length === 1) setImmediate(() => this.flushWrites());
  }

  /** Hands the deferred WRITEs to the volume, in order, gathered (one turn of each vDisk's lock). */
  private flushWrites(): void {
    if (this.deferred.length === 0) return;
    const runs = this.deferred;
    this.deferred = [];
    // one alone (depth 1) goes the plain way: the vDisk takes its lock for it, nothing to gather
    if (runs.length === 1) return this.runWrite(runs[0]);
    Atomics.add(this.counters, C.WRITE_GATHERS, 1);
    Atomics.add(this.counters, C.WRITES_GATHERED, runs.length);
    gatherWrites(() => {
      for (const w of runs) this.runWrite(w);
    });
  }

  private runWrite({ h, request, run }: { h: InHeader; request: Uint8Array; run: () => void }): void {
    try {
      run();
    } catch (err) {
      // as in dispatch: dropped from the table, not recycled (what threw may still hold a view of it, and its
      // answer may still come: then recycle finds nothing); kept there, it would stay referenced for good
      this.owners.delete(request.buffer as ArrayBuffer);
      log.error('FUSE WRITE failed unexpectedly: EIO', { unique: h.unique, nodeid: h.nodeid, error: err instanceof Error ? err.stack : String(err) });
      this.fail(h, E.EIO);
    }
  }

  recycle(request: Uint8Array): void {
    const ab = request.buffer as ArrayBuffer;
    const back = this.owners.get(ab);
    if (back === undefined) return; // a small request's own copy, or not from a reader (tests)
    this.owners.delete(ab);
    back.postMessage(ab, [ab]);
  }

  opened(fh: number): void {
    const view = this.fds?.get(fh)?.readerView;
    if (view === undefined || this.viewPorts.length === 0) return;
    if (!this.subscribed.has(view.id)) {
      if ((Atomics.load(view.ctl, VIEW.FLAGS) & VIEW_CLOSED) !== 0) return;
      this.subscribe(view);
    }
    this.tellReaders({ fh, view: view.id });
  }

  released(fh: number): void {
    if (this.viewPorts.length > 0) this.tellReaders({ fh, view: 0 });
  }

  /** The readers get `view` whole, then each change as it happens, until the vDisk closes. */
  private subscribe(view: ReaderView): void {
    const { snapshot, stop } = view.subscribe((m) => {
      this.tellReaders(m);
      if ('seq' in m && (Atomics.load(view.ctl, VIEW.FLAGS) & VIEW_CLOSED) !== 0) {
        stop();
        this.subscribed.delete(view.id);
        this.tellReaders({ drop: view.id });
      }
    });
    this.subscribed.set(view.id, stop);
    this.tellReaders({ snapshot });
  }

  /** Synchronous: the message is in every reader's queue when this returns (they drain it before their next request). */
  private tellReaders(m: ReaderMessage): void {
    for (const p of this.viewPorts) p.postMessage(m);
  }

  fail(h: InHeader, errno: number): void {
    this.send(errorReply(h.unique, errno));
  }

  invalidate(nodeid: number): void {
    try {
      fs.writeSync(this.fd, notifyInvalInode(nodeid, 0, 0));
      Atomics.add(this.counters, C.INVALIDATIONS, 1);
    } catch (err) {
      // ENOENT: the kernel has no inode cached for it, nothing to drop
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENODEV') log.warn('FUSE_NOTIFY_INVAL_INODE failed', { nodeid, code });
    }
  }

  /**
   * FUSE_NOTIFY_INVAL_INODE written from the thread pool, for changes made outside a request (the management
   * API): the kernel may hold the node's page locks for a read waiting on this very thread, so a writeSync here
   * could wait on itself. Resolves once the kernel took it (or had nothing cached).
   */
  invalidateLater(nodeid: number): Promise<void> {
    return new Promise((resolve) => {
      fs.write(this.fd, notifyInvalInode(nodeid, 0, 0), (err) => {
        const code = err?.code;
        if (!err) Atomics.add(this.counters, C.INVALIDATIONS, 1);
        else if (code !== 'ENOENT' && code !== 'ENODEV') log.warn('FUSE_NOTIFY_INVAL_INODE failed', { nodeid, code });
        resolve();
      });
    });
  }

  initDone(s: Record<string, unknown>): void {
    this.resolveInit(s);
  }

  /** The counters, for the log. */
  stats(): Record<string, unknown> {
    return { ...summary(this.counters), nodes: this.nodes.size, openDirs: this.dirs.size };
  }
}
