/**
 * Misbehaving DTL peers for the memory tests (test/dtl-server-memory.test.ts): raw TCP connections built
 * from the real frame and message encoders that flood, stall or never read, and a sampler of a process's
 * resident memory read from /proc/<pid>/status (VmRSS now, VmHWM the peak since it started).
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { encodeFrame, HEADER_BYTES, MAGIC, MAX_PAYLOAD, Msg, VERSION } from '../../dtl-client/frame.js';
import { encodeEntry, Writer } from '../../dtl-client/messages.js';

export const MiB = 2 ** 20;

/** VmRSS and VmHWM of a process, in bytes. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

export const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

/** A raw connection to a DTL server (no authentication: the test servers listen on loopback without a secret). */
export interface RawPeer {
  sock: net.Socket;
  /** Resolves when the server closes (or resets) the connection. */
  closed: Promise<void>;
  /** Bytes the server sent (only counted while `reading`). */
  received: number;
}

/** Connects; with `read` false the peer never reads what the server sends (the socket stays paused). */
export async function rawPeer(address: string, read = false): Promise<RawPeer> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  const sock = net.connect({ host, port });
  const peer: RawPeer = { sock, received: 0, closed: new Promise((resolve) => sock.once('close', () => resolve())) };
  sock.on('error', () => undefined);
  if (read) sock.on('data', (d: Buffer) => (peer.received += d.length));
  else sock.pause();
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('close', () => reject(new Error(`could not connect to ${address}`)));
  });
  return peer;
}

/** Writes `buf`; waits while the socket's buffer is full. False if the connection closed first. */
export function send(sock: net.Socket, buf: Buffer): Promise<boolean> {
  if (sock.destroyed) return Promise.resolve(false);
  if (sock.write(buf)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      sock.off('drain', onDrain);
      sock.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    sock.on('drain', onDrain);
    sock.on('close', onClose);
  });
}

/** A request frame: `vdisk` then `fields`. */
export function request(type: Msg, id: number, vdisk: string, fields: (w: Writer) => Writer = (w) => w): Buffer {
  return encodeFrame(type, id, fields(new Writer().str(vdisk)).done());
}

/**
 * An AddEntries frame of exactly the maximum payload (MAX_PAYLOAD): 4 KiB cluster entries with tag `tag`,
 * the last one shortened to fill the frame.
 */
export function maxAddEntries(vdisk: string, tag: number, id = 1): Buffer {
  const head = new Writer().str(vdisk).u32(0).done().length;
  const recs: Buffer[] = [];
  let room = MAX_PAYLOAD - head;
  const data = Buffer.alloc(4096, 0x5a);
  while (room - (21 + 4096) >= 21) {
    recs.push(encodeEntry(0, tag, recs.length * 4096, data));
    room -= 21 + 4096;
  }
  recs.push(encodeEntry(0, tag, recs.length * 4096, data.subarray(0, room - 21)));
  const payload = Buffer.concat([new Writer().str(vdisk).u32(recs.length).done(), ...recs]);
  if (payload.length !== MAX_PAYLOAD) throw new Error(`built ${payload.length} bytes, meant ${MAX_PAYLOAD}`);
  return encodeFrame(Msg.AddEntries, id, payload);
}

/** The header of a frame announcing `length` payload bytes (a slowloris sends this, then too little). */
export function header(type: Msg, id: number, length: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt16LE(MAGIC, 0);
  h.writeUInt8(VERSION, 2);
  h.writeUInt8(type, 3);
  h.writeUInt32LE(id, 4);
  h.writeUInt32LE(length, 8);
  return h;
}

/** Resolves true once `pred()` holds (polled), false after `ms`. */
export async function until(pred: () => boolean, ms: number, every = 100): Promise<boolean> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, every));
  }
  return true;
}
