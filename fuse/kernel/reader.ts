/**
 * A reader thread of the kernel engine (a worker_threads module). It blocks in readSync on the shared
 * /dev/fuse descriptor — one request per read, the buffer sized for the largest write — and hands each
 * request to the main thread, where the handlers and the volume layer live, by transferring its bytes
 * (no copy for big writes: the whole read buffer goes and another takes its place — one the main thread
 * sent back once it had answered the write (`recycled`), a new one only when none is waiting; small
 * requests are copied into a buffer of their own). Recycling matters: a fresh 1 MiB buffer per write made
 * V8 collect garbage for the external memory every few hundred MiB. The non-`user.*` GETXATTR (the kernel's security.capability probe) needs no
 * state and is answered here with ENODATA. A READ whose clusters are all unwritten or in the vDisk's write
 * cache is answered here too (fast-read.ts), from what the main thread publishes on `views`, drained before
 * each request. Reads of /dev/fuse end with ENODEV once the mount is gone.
 *
 * Each WRITE's whole clusters get their crc32 here (write-crcs.ts), carried behind the request's bytes.
 *
 * Messages to the main thread: [ArrayBuffer, length, recyclable, crcAt] for a request; {end: code} when the loop
 * stops. On `recycled` the main thread sends back the read buffers of big writes it has answered; on
 * `views` it sends the open vDisks' views and their changes (fast-read.ts, ReaderMessage).
 */
import fs from 'node:fs';
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { C, countRequest } from './counters.js';
import { FastReads, type ReaderMessage } from './fast-read.js';
import { computeWriteCrcs, withCrcsLength } from './write-crcs.js';
import { errorReply } from './encode.js';
import { decode, u64 } from './decode.js';
import { Op, READ_BUFFER_SIZE } from './protocol.js';

const ENODATA = -61;
/** Requests above this size (writes) are handed over without a copy. */
const TRANSFER_ABOVE = 64 * 1024;

const { fd, counters, recycled, views } = workerData as { fd: number; counters: Int32Array; recycled: MessagePort; views: MessagePort };
const fast = new FastReads();

/** Applies what the main thread published since the last request (before this one is looked at). */
function drainViews(): void {
  for (let m = receiveMessageOnPort(views); m !== undefined; m = receiveMessageOnPort(views)) fast.apply(m.message as ReaderMessage);
}
const port = parentPort!;
const pause = new Int32Array(new SharedArrayBuffer(4));

let buf = Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);

function replyHere(reply: Buffer): void {
  try {
    fs.writeSync(fd, reply);
  } catch {
    Atomics.add(counters, C.REPLIES_DROPPED, 1); // interrupted meanwhile (ENOENT) or unmounted (ENODEV)
  }
}

function loop(): string {
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      if (code === 'EINTR' || code === 'EAGAIN') continue;
      // before mount(2) has returned the device refuses reads: wait for it
      if (code === 'EPERM') {
        Atomics.wait(pause, 0, 0, 5);
        continue;
      }
      return code;
    }
    if (n === 0) return 'EOF';
    const opcode = buf.readUInt32LE(4);
    countRequest(counters, opcode);
    drainViews();
    if (opcode === Op.READ) {
      if (fast.serve(buf.subarray(0, n), fd)) {
        Atomics.add(counters, C.FAST_READS, 1);
        continue;
      }
      Atomics.add(counters, C.READS_TO_MAIN, 1);
    }
    if (opcode === Op.GETXATTR) {
      const req = buf.subarray(0, n);
      const { name } = decodeName(req);
      if (name !== undefined && !name.startsWith('user.')) {
        Atomics.add(counters, C.FOREIGN_GETXATTR, 1);
        replyHere(errorReply(u64(req, 8), ENODATA));
        continue;
      }
    }
    // a WRITE's cluster crcs, behind its bytes (write-crcs.ts): the main thread's slot headers use them
    let crcAt = 0;
    if (opcode === Op.WRITE) {
      crcAt = computeWriteCrcs(buf, n);
      if (crcAt !== 0) Atomics.add(counters, C.WRITE_CRCS, 1);
    }
    if (n > TRANSFER_ABOVE) {
      const ab = buf.buffer;
      const back = receiveMessageOnPort(recycled)?.message as ArrayBuffer | undefined;
      buf = back !== undefined ? Buffer.from(back) : Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
      Atomics.add(counters, C.POSTED, 1); // before the post: the main thread never sees more taken than posted
      port.postMessage([ab, n, opcode === Op.WRITE, crcAt], [ab]); // only a WRITE's buffer comes back (ops-file.ts)
    } else {
      const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + withCrcsLength(buf, n, crcAt));
      Atomics.add(counters, C.POSTED, 1);
      port.postMessage([ab, n, false, crcAt], [ab]);
    }
  }
}

function decodeName(req: Buffer): { name: string | undefined } {
  try {
    return { name: decode.getxattr(req).name };
  } catch {
    return { name: undefined }; // malformed: the main thread answers it
  }
}

port.postMessage({ end: loop() });
