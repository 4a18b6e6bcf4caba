/**
 * The data buffers of READ replies, reused. A READ's data is read by the volume layer into a buffer that
 * the reply then writes to /dev/fuse (writev, synchronous: the kernel has copied it when the call returns),
 * so the buffer is free again right after the reply. A fresh buffer per big read (Buffer.allocUnsafe above
 * 4 KiB is a new ArrayBuffer) made V8 collect garbage for the external memory every few hundred MiB read.
 * Reads of up to 4 KiB come from Node's own buffer pool and are not kept here.
 */
import { MAX_WRITE } from './protocol.js';

/** Above this a read's buffer is a pooled one of MAX_WRITE bytes (the largest read, max_read). */
const POOLED_ABOVE = 4096;
/** Free buffers kept (one per READ in flight at most is taken; more than this are let go). */
const KEEP = 16;

const free: Buffer[] = [];

/** A buffer of `len` bytes for a READ's data (uninitialised). Give it back with giveReadBuffer once replied. */
export function takeReadBuffer(len: number): Buffer {
  if (len <= POOLED_ABOVE || len > MAX_WRITE) return Buffer.allocUnsafe(len);
  const b = free.pop() ?? Buffer.allocUnsafeSlow(MAX_WRITE);
  return b.subarray(0, len);
}

/** `b` (from takeReadBuffer) is no longer used by anyone. */
export function giveReadBuffer(b: Buffer): void {
  if (b.buffer.byteLength !== MAX_WRITE || b.byteOffset !== 0 || free.length >= KEEP) return;
  free.push(Buffer.from(b.buffer, 0, MAX_WRITE));
}
