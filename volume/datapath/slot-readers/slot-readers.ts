/**
 * Slot readers: a few worker threads that read runs of slots for the read path (read-path.ts) while the main
 * thread reads its own share, so that a large read spread over many SCOs uses more than one core, and the
 * reads of backend files (in place, read-cache pieces) do not block the main thread (issue 10: "runs of
 * slots spread over many SCOs are read in parallel"; docs/read-path.md, "Slot readers").
 *
 * Why threads and not libuv's async reads: a read after random 4 KiB overwrites is ~256 runs of one slot
 * per MiB; one fs.readv per run through libuv's pool cost 2–4× the CPU of the synchronous pread and more
 * wall time (measured: 1.1–2.5 ms per MiB against 0.65 ms), and Node offers no batched read. A worker
 * takes a whole batch of runs in one message: for each run one pread of its whole slots into the worker's
 * scratch (a SharedArrayBuffer), every slot checked there with the same checkSlot as everywhere (magic,
 * crc32, namespace tag, SCO, slot, address); the main thread then copies the data of the sound runs into the
 * caller's buffer and reads the others again by the careful path.
 *
 * Descriptors are process-wide: the main thread resolves each run's descriptor (write-cache SCO, backend
 * object, read-cache piece) when it hands the batch over. A descriptor closed before the worker reads it
 * reads EBADF, or another file, whose slots fail the checks (a slot names its namespace, SCO, slot and
 * address): the run takes the careful path. To keep that rare, closes of the read path's descriptors go
 * through closeWhenIdle: deferred while a batch is out.
 *
 * Bounded: at most READERS workers, each with one batch of at most BATCH_SLOTS slots; a request that finds
 * no idle reader reads everything itself, as before. The workers are started on first use, hold the event
 * loop only while a batch is out, and a worker that dies is replaced on the next use (its batch's runs take
 * the careful path).
 */
import fs from 'node:fs';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { SLOT_SIZE } from '../formats/sco-format.js';
import { JOB, JOB_WORDS } from './slot-job-table.js';
import { logger } from '../../../util/log.js';

const log = logger('slot-readers');

/**
 * Worker threads reading slots: one less than the cores (the main thread reads too), 1 to 4;
 * VPOOLFS_SLOT_READERS=<n> sets it (0: none, every read on the main thread as before — for A/B measurements).
 */
const READERS = readersWanted(process.env.VPOOLFS_SLOT_READERS);

function readersWanted(env: string | undefined): number {
  if (env !== undefined && /^\d+$/.test(env)) return Math.min(16, Number(env));
  return Math.max(1, Math.min(4, os.availableParallelism() - 1));
}
/** Slots one batch holds at most (its scratch: BATCH_SLOTS × 4128 bytes per worker). */
export const BATCH_SLOTS = 512;
/** Runs one batch holds at most. */
const BATCH_RUNS = 512;

/** Runs and batches the slot readers were handed (tests and logs look at it). */
export const slotReaderStats = { runs: 0, batches: 0 };

/** A run handed to a reader: `n` slots at byte `pos` of `fd`, expected as SCO `sco` slots from `slot`, addresses from `a`. */
export interface SlotJob {
  fd: number;
  pos: number;
  n: number;
  tag: number;
  sco: number;
  slot: number;
  a: number;
}

/** One worker and its shared scratch and job table; one batch at a time. */
export class SlotReader {
  readonly scratch: Buffer;
  private readonly jobs: Float64Array;
  private readonly worker: Worker;
  private pending: { resolve: (ok: Uint8Array) => void; reject: (e: Error) => void; count: number } | null = null;
  busy = false;
  dead = false;
  private slots = 0;
  private runs = 0;

  constructor() {
    const scratch = new SharedArrayBuffer(BATCH_SLOTS * SLOT_SIZE);
    const jobs = new SharedArrayBuffer(BATCH_RUNS * JOB_WORDS * 8);
    this.scratch = Buffer.from(scratch);
    this.jobs = new Float64Array(jobs);
    this.worker = new Worker(new URL('./slot-reader-worker.js', import.meta.url), { workerData: { scratch, jobs } });
    this.worker.unref();
    this.worker.on('message', () => {
      const p = this.pending;
      if (p === null) return;
      this.pending = null;
      this.worker.unref();
      const ok = new Uint8Array(p.count);
      for (let i = 0; i < p.count; i++) ok[i] = this.jobs[i * JOB_WORDS + JOB.RESULT];
      p.resolve(ok);
    });
    const die = (err: Error): void => {
      if (this.dead) return;
      this.dead = true;
      log.warn('a slot reader thread ended; its runs are read again on the main thread', { error: String(err) });
      this.pending?.reject(err);
      this.pending = null;
    };
    this.worker.on('error', die);
    this.worker.on('exit', (code) => die(new Error(`slot reader exited with code ${code}`)));
  }

  /** Slots still free in the batch being filled. */
  room(): number {
    return Math.min(BATCH_SLOTS - this.slots, (BATCH_RUNS - this.runs) * BATCH_SLOTS);
  }

  /** Adds a run to the batch being filled; returns the byte offset of its slots in `scratch`. */
  add(j: SlotJob): number {
    const at = this.slots * SLOT_SIZE;
    const w = this.runs * JOB_WORDS;
    const t = this.jobs;
    t[w + JOB.FD] = j.fd;
    t[w + JOB.POS] = j.pos;
    t[w + JOB.N] = j.n;
    t[w + JOB.TAG] = j.tag;
    t[w + JOB.SCO] = j.sco;
    t[w + JOB.SLOT] = j.slot;
    t[w + JOB.ADDRESS] = j.a;
    t[w + JOB.AT] = at;
    t[w + JOB.RESULT] = 0;
    this.slots += j.n;
    this.runs++;
    return at;
  }

  /** Sends the batch; resolves with 1 per sound run, 0 per run that failed (in the order added). */
  start(): Promise<Uint8Array> {
    if (this.dead) return Promise.reject(new Error('the slot reader thread has ended'));
    const count = this.runs;
    slotReaderStats.runs += count;
    slotReaderStats.batches++;
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending = { resolve, reject, count };
      this.worker.ref(); // the answer must keep the process alive (a lone read at the end of a script)
      this.worker.postMessage(count);
    });
  }

  /** The caller has copied what it needed out of `scratch`: the reader takes the next batch. */
  release(): void {
    this.slots = 0;
    this.runs = 0;
    this.busy = false;
    if (--inFlight === 0) flushCloses();
  }
}

const readers: SlotReader[] = [];
/** Readers taken and not yet released: while any is, closeWhenIdle defers closes. */
let inFlight = 0;
const closeLater: number[] = [];

/**
 * Up to `max` idle readers, marked busy (give each back with release() once its batch is copied out). None
 * when all are busy: the caller reads by itself.
 */
export function takeReaders(max: number): SlotReader[] {
  for (let i = readers.length - 1; i >= 0; i--) if (readers[i].dead) readers.splice(i, 1);
  while (readers.length < READERS) {
    try {
      readers.push(new SlotReader());
    } catch (err) {
      log.warn('could not start a slot reader thread; reading on the main thread', { error: String(err) });
      break;
    }
  }
  const out: SlotReader[] = [];
  for (const r of readers) {
    if (out.length >= max) break;
    if (r.busy) continue;
    r.busy = true;
    inFlight++; // from now on the descriptors handed to it must stay open (closeWhenIdle)
    out.push(r);
  }
  return out;
}

/**
 * Closes `fd` now, or once no reader is taken if one is (a batch being filled or out may name it: the
 * number must not name another file before the reader has read it). For the descriptors the read path hands to readers.
 */
export function closeWhenIdle(fd: number): void {
  if (inFlight === 0) fs.closeSync(fd);
  else closeLater.push(fd);
}

function flushCloses(): void {
  while (closeLater.length > 0) {
    const fd = closeLater.pop()!;
    try {
      fs.closeSync(fd);
    } catch (err) {
      log.warn('closing a descriptor after the slot readers were done failed', { fd, error: String(err) });
    }
  }
}
