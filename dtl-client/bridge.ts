/**
 * The client bridge of one vDisk in `async` or `sync` mode (a DtlSink, volume/vdisk/dtl-hook.ts): a decorator
 * on the vDisk's writer that sends every change of its write cache to a DTL server.
 *
 *   sync   each write is acknowledged once the server has its entries (batched with the writes that
 *          arrive meanwhile); fsync also waits for the server's disk.
 *   async  entries queue up and are shipped every ASYNC_ENTRIES entries, every second and on fsync
 *          (which waits for the server's disk); a write waits while the queue is over ASYNC_MAX_BYTES.
 *
 * States: `catchup` while it (re)attaches — register, clear, ship the history the backend lacks
 * (history.ts) —, then `ok_sync`. When no server answers, `degraded`: I/O goes on without waiting, the
 * event is logged, and every `retryMs` it tries the servers again in order (so it moves to the next one),
 * then catches up. Entries recorded while degraded are not kept: the history covers them.
 *
 * Fenced (fence.ts): the server refused this router (FENCED: a newer owner registered or recovered the vDisk
 * there). Nothing is acknowledged from then on: settle() and flush() reject with FENCED (the writer gets EIO),
 * the vDisk is told (fenceByDtl: its I/O answers EIO, one log line naming the new owner), the bridge stops. Its
 * state reads `degraded` (no server); it is never attached again.
 */
import { logger } from '../util/log.js';
import { VolumeError } from '../util/errors.js';
import type { DtlSink, DtlVDisk } from '../volume/vdisk/dtl-sink.js';
import type { DtlInfo, DtlMode, DtlState } from '../volume/types.js';
import { DtlClient, type DtlClientOptions } from './client.js';
import { DtlError } from './errors.js';
import { captureHistory, historyEntries } from './history.js';
import { peekClusterCrc } from '../volume/datapath/write-cache/known-crcs.js';
import { encodeClusterEntry, encodeDiscard, encodeResize } from './messages.js';

const log = logger('dtl');

export const ASYNC_ENTRIES = 32;
export const ASYNC_INTERVAL_MS = 1000;
export const ASYNC_MAX_BYTES = 16 * 2 ** 20;
const BATCH_BYTES = 1 * 2 ** 20;
/** A connection lost after at least this long in ok_sync is attached again at once, not after retryMs degraded. */
export const REATTACH_AFTER_MS = 1000;
/** AddEntries requests in flight at once per vDisk. */
const MAX_INFLIGHT = 4;

/** A queued entry record, with the crc32 of the whole record when known (the frame's checksum combines it). */
type Item = { seq: number; rec: Buffer; crc?: number } | { seq: number; clear: true; done: () => void };

export interface BridgeOptions extends DtlClientOptions {
  router: string;
  retryMs: number;
}

let lastEpoch = 0;
/** Registration epochs grow strictly on this router, so recovery can tell the newest copy. */
function epoch(): number {
  lastEpoch = Math.max(Date.now(), lastEpoch + 1);
  return lastEpoch;
}

export class DtlBridge implements DtlSink {
  private state: DtlState = 'catchup';
  private queue: Item[] = [];
  private queueBytes = 0;
  private recorded = 0;
  private shipped = 0;
  private flushed = 0;
  private flushWanted = 0;
  private trimTo = 0;
  private trimmed = 0;
  private waiters: Array<{ kind: 'ship' | 'flush' | 'room'; seq: number; resolve: () => void; reject: (err: Error) => void }> = [];
  /** Why the DTL server refused this router (fenced: see the header), or null. */
  private fencedBy: string | null = null;
  private wake: (() => void) | null = null;
  private closed = false;
  /** Bumped on every (re)attach and degrade: replies to requests of an earlier attachment are ignored. */
  private gen = 0;
  private inflight = 0;
  private inflightError: Error | null = null;
  private readonly client: DtlClient;

  constructor(private readonly v: DtlVDisk, readonly mode: DtlMode, private readonly opts: BridgeOptions) {
    // pinned to the server it caught up on; a lost connection wakes the loop, which attaches again (at once, or degraded first)
    this.client = new DtlClient({ ...opts, reconnect: false, onLost: () => this.kick() });
    void this.run();
  }

  // ---- DtlSink ------------------------------------------------------------------------------------

  clusters(addresses: number[], scos: number[], datas: Uint8Array[]): void {
    if (this.closed) return;
    // the reader thread's crc32 of each whole cluster, when it has one: no pass over the data here but the copy
    for (let i = 0; i < addresses.length; i++) {
      const { rec, crc } = encodeClusterEntry(scos[i], addresses[i], datas[i], peekClusterCrc(datas[i]));
      this.record(rec, crc);
    }
  }

  resize(size: number, tag: number, tlog: number): void {
    this.record(encodeResize(tag, size, tlog));
  }

  discard(first: number, count: number, tag: number, tlog: number): void {
    this.record(encodeDiscard(tag, first, count, tlog));
  }

  settle(): Promise<void> {
    if (this.fencedBy !== null) return Promise.reject(this.fencedError());
    if (this.state === 'degraded' || this.closed) return Promise.resolve();
    if (this.mode === 'sync') return this.shipped >= this.recorded ? Promise.resolve() : this.waitFor('ship', this.recorded);
    return this.queueBytes > ASYNC_MAX_BYTES ? this.waitFor('room', 0) : Promise.resolve();
  }

  flush(): Promise<void> {
    if (this.fencedBy !== null) return Promise.reject(this.fencedError());
    if (this.state === 'degraded' || this.closed || this.flushed >= this.recorded) return Promise.resolve();
    this.flushWanted = Math.max(this.flushWanted, this.recorded);
    this.kick();
    return this.waitFor('flush', this.recorded);
  }

  trim(sco: number, idle: boolean): Promise<void> {
    if (this.closed || this.state === 'degraded') return Promise.resolve();
    this.trimTo = Math.max(this.trimTo, sco);
    // while catching up the queue is not served (the catch-up waits for the vDisk's lock, which a rollback
    // waiting for this may hold): the catch-up clears the server and ships what is local then, itself
    if (!idle || this.state !== 'ok_sync') {
      this.kick();
      return Promise.resolve();
    }
    return new Promise((done) => {
      this.queue.push({ seq: this.recorded, clear: true, done });
      this.kick();
    });
  }

  /** Bytes of entries queued or in flight, not yet on the server (tests watch the async bound). */
  get queuedBytes(): number {
    return this.queueBytes;
  }

  info(): DtlInfo {
    return { mode: this.mode, state: this.state, server: this.state === 'degraded' ? null : this.client.server };
  }

  close(forget: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.dropQueue();
    this.release();
    this.kick();
    if (forget && this.fencedBy === null) {
      // registered again first: the connection may be a new one, and the server takes changes only from a registered owner
      this.client.connect().then(() => this.client.register(this.v.id, this.opts.router, epoch(), this.v.dtlOwner())).then(() => this.client.unregister(this.v.id)).catch((err: DtlError) => log.warn('could not drop the vDisk from the DTL server', { vdisk: this.v.id, error: err.message }))
        .finally(() => this.client.close());
    } else {
      this.client.close();
    }
  }

  async retire(ms: number): Promise<void> {
    if (this.closed) return;
    if (this.fencedBy !== null) return this.close(false);
    const deadline = Date.now() + ms;
    // a catch-up in progress has sent its Clear but not yet the Flush that makes it count: let it finish
    while (this.state === 'catchup' && Date.now() < deadline) await pause(20);
    if (this.state === 'ok_sync') {
      const cleared = new Promise<boolean>((done) => {
        this.queue.push({ seq: this.recorded, clear: true, done: () => done(true) });
        this.kick();
      });
      const left = Math.max(0, deadline - Date.now());
      if (await Promise.race([cleared, pause(left).then(() => false)])) {
        log.info('DTL emptied: the vDisk is all in the backend', { vdisk: this.v.id, server: this.client.server });
        this.close(false);
        return;
      }
    }
    log.warn('the DTL server keeps entries of this vDisk although it is all in the backend (the server did not answer in time)', {
      vdisk: this.v.id, state: this.state, waitedMs: ms,
    });
    this.close(false);
  }

  // ---- the shipping loop --------------------------------------------------------------------------

  private record(rec: Buffer, crc?: number): void {
    if (this.closed) return;
    const seq = ++this.recorded;
    if (this.state === 'degraded') {
      this.shipped = this.flushed = seq;
      return;
    }
    this.queue.push({ seq, rec, crc });
    this.queueBytes += rec.length;
    if (this.mode === 'sync' || this.queue.length >= ASYNC_ENTRIES) this.kick();
  }

  private async run(): Promise<void> {
    let servingSince = 0; // when the bridge last reached ok_sync (0: it is not serving)
    while (!this.closed) {
      try {
        const server = await this.client.connect();
        await this.catchUp(server);
        if (this.closed) return;
        this.setState('ok_sync', { server });
        servingSince = Date.now();
        await this.serve();
      } catch (err) {
        if (this.closed) return;
        if ((err as DtlError).code === 'FENCED') return this.fence(err as DtlError);
        const served = servingSince;
        servingSince = 0;
        if (this.attachAgainAtOnce(err as DtlError, served)) continue;
        this.degrade(err as Error);
        await this.sleep(this.opts.retryMs);
      }
    }
  }

  /**
   * The connection was lost while serving — closed or reset, not timed out: that server, or the next one,
   * may well answer at once (a restarted server, a connection dropped by the network while idle), so attach
   * again now instead of going `degraded` for retryMs: writes stay protected (a sync write waits for the
   * catch-up). If no server answers, the next failure degrades as usual. Only after REATTACH_AFTER_MS of
   * serving, so a server that keeps dropping the connection cannot spin this loop.
   */
  private attachAgainAtOnce(err: DtlError, servingSince: number): boolean {
    if (err.code !== 'UNREACHABLE' || servingSince === 0 || Date.now() - servingSince < REATTACH_AFTER_MS) return false;
    this.newGeneration(); // replies still arriving on the lost connection must not count: the catch-up ships everything again
    log.warn('DTL connection lost; attaching again', { vdisk: this.v.id, mode: this.mode, error: err.message });
    this.setState('catchup', { error: err.message });
    return true;
  }

  private async catchUp(server: string): Promise<void> {
    if (this.closed) return;
    this.setState('catchup', { server });
    this.newGeneration();
    await this.client.register(this.v.id, this.opts.router, epoch(), this.v.dtlOwner());
    // under the vDisk's lock: the history so far replaces whatever the queue held
    const { items, base } = await this.v.exclusive(() => {
      const items = captureHistory(this.v);
      this.dropQueue(); // the catch-up clears the server itself
      this.queueBytes = 0;
      return { items, base: this.recorded };
    });
    await this.client.clear(this.v.id);
    let count = 0;
    for (const batch of historyEntries(this.v, items, BATCH_BYTES)) {
      if (this.closed) return;
      await this.client.addEntries(this.v.id, batch);
      count += batch.length;
    }
    await this.client.flush(this.v.id);
    this.shipped = Math.max(this.shipped, base);
    this.flushed = Math.max(this.flushed, base);
    this.release();
    log.info('DTL caught up: the history not yet in the backend is on the server', { vdisk: this.v.id, server, entries: count });
  }

  /** Ships until closed; throws when the server fails. Up to MAX_INFLIGHT AddEntries are in flight (the server answers in order). */
  private async serve(): Promise<void> {
    let due = false;
    const gen = this.gen;
    while (!this.closed) {
      // lost (while idle too): the history must be shipped again, to whichever server answers next
      if (this.client.server === null) throw new DtlError('UNREACHABLE', 'the connection to the DTL server was lost');
      if (this.inflightError !== null) {
        const err = this.inflightError;
        this.inflightError = null;
        throw err;
      }
      const head = this.queue[0];
      const quiet = this.inflight === 0;
      if (head !== undefined && 'clear' in head) {
        if (!quiet) {
          await this.idle(0);
          continue;
        }
        await this.client.clear(this.v.id);
        await this.client.flush(this.v.id); // a Clear takes effect at the next Flush (store.ts)
        this.queue.shift();
        head.done();
        this.trimmed = Math.max(this.trimmed, this.trimTo);
        continue;
      }
      if (head !== undefined && this.inflight < MAX_INFLIGHT && (this.mode === 'sync' || due || this.queue.length >= ASYNC_ENTRIES || this.flushWanted > this.shipped || this.queueBytes > ASYNC_MAX_BYTES)) {
        // sync, with a batch in flight already: let the writes arriving right now join this one
        if (this.mode === 'sync' && !quiet) await new Promise((r) => setImmediate(r));
        if (this.closed || gen !== this.gen) return;
        this.sendBatch(gen);
        due = false;
        continue;
      }
      if (quiet && this.flushWanted > this.flushed && this.shipped >= this.flushWanted) {
        const target = this.shipped;
        await this.client.flush(this.v.id);
        this.flushed = Math.max(this.flushed, target);
        this.release();
        continue;
      }
      if (quiet && this.trimTo > this.trimmed) {
        const to = this.trimTo;
        await this.client.removeUpTo(this.v.id, to);
        this.trimmed = Math.max(this.trimmed, to);
        continue;
      }
      due = await this.idle(head !== undefined && this.inflight < MAX_INFLIGHT ? ASYNC_INTERVAL_MS : 0);
    }
  }

  /** Sends the entries at the head of the queue (up to a Clear or BATCH_BYTES); the reply advances `shipped`. */
  private sendBatch(gen: number): void {
    const recs: Buffer[] = [];
    const crcs: Array<number | undefined> = [];
    let bytes = 0;
    let last = 0;
    for (const it of this.queue) {
      if ('clear' in it || bytes >= BATCH_BYTES) break;
      recs.push(it.rec);
      crcs.push(it.crc);
      bytes += it.rec.length;
      last = it.seq;
    }
    this.queue.splice(0, recs.length);
    this.inflight++;
    this.client.addEntries(this.v.id, recs, crcs).then(
      () => {
        if (gen !== this.gen) return; // degraded or re-attached meanwhile: the history covers these
        this.inflight--;
        this.queueBytes -= bytes;
        this.shipped = Math.max(this.shipped, last);
        this.release();
        this.kick();
      },
      (err: Error) => {
        if (gen !== this.gen) return;
        this.inflight--;
        this.inflightError ??= err;
        this.kick();
      },
    );
  }

  private degrade(err: Error): void {
    const was = this.state;
    this.setState('degraded', { error: err.message });
    this.newGeneration();
    this.dropQueue();
    this.queueBytes = 0;
    this.shipped = this.flushed = this.recorded;
    this.release();
    this.client.drop();
    if (was !== 'degraded') {
      log.warn('DTL degraded: no DTL server reachable; writes go on unprotected until one is back', {
        vdisk: this.v.id, mode: this.mode, servers: this.opts.servers, error: err.message, retryMs: this.opts.retryMs,
      });
    }
  }

  /** The server refused this router (see the header): nothing more is acknowledged; the bridge stops. */
  private fence(err: DtlError): void {
    this.fencedBy = err.message; // "DTL server HOST:PORT: <what> refused: … fenced by router '…' (owner tag …)"
    this.newGeneration();
    this.dropQueue();
    this.queueBytes = 0;
    this.setState('degraded', { error: err.message, fenced: true });
    this.v.fenceByDtl(this.fencedBy);
    const e = this.fencedError();
    for (const w of this.waiters) w.reject(e);
    this.waiters = [];
    this.client.close();
  }

  private fencedError(): VolumeError {
    return new VolumeError('FENCED', `not acknowledged: this router lost vDisk ${this.v.id} (${this.fencedBy})`, { vdisk: this.v.id });
  }

  /** Requests in flight belong to an earlier attachment from now on: their replies and errors are ignored. */
  private newGeneration(): void {
    this.gen++;
    this.inflight = 0;
    this.inflightError = null;
  }

  /** Empties the queue; a waiting Clear is released (degraded or re-attaching: nothing to wait for). */
  private dropQueue(): void {
    for (const it of this.queue) if ('clear' in it) it.done();
    this.queue = [];
  }

  /** Every change of state is logged (`DTL state`, with from/to), so tests and operators can follow it. */
  private setState(to: DtlState, fields: Record<string, unknown>): void {
    if (this.state === to) return;
    log.info('DTL state', { vdisk: this.v.id, mode: this.mode, from: this.state, to, ...fields });
    this.state = to;
  }

  /** Resolves the waiters whose condition holds. */
  private release(): void {
    const all = this.closed || this.state === 'degraded';
    this.waiters = this.waiters.filter((w) => {
      const ok = all
        || (w.kind === 'ship' && this.shipped >= w.seq)
        || (w.kind === 'flush' && this.flushed >= w.seq)
        || (w.kind === 'room' && this.queueBytes <= ASYNC_MAX_BYTES / 2);
      if (ok) w.resolve();
      return !ok;
    });
  }

  private waitFor(kind: 'ship' | 'flush' | 'room', seq: number): Promise<void> {
    return new Promise((resolve, reject) => this.waiters.push({ kind, seq, resolve, reject }));
  }

  private kick(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits for a kick; with `ms` > 0 also for that long (then returns true: the async timer is due). */
  private idle(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = ms > 0 ? setTimeout(() => { this.wake = null; resolve(true); }, ms) : null;
      this.wake = () => {
        if (timer !== null) clearTimeout(timer);
        resolve(false);
      };
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.wake = null; resolve(); }, ms);
      timer.unref();
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** A plain timer (the bridge's own sleep() is the shipping loop's, woken by kick()). */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
