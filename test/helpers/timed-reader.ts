/**
 * A reader in a process of its own (test/fuse-kernel-fast-read.test.ts): random O_DIRECT reads of one file
 * until stdin closes, each on a descriptor opened for it (the mount sees handles come and go); a `p` on
 * stdin pauses it (a rollback waits for the vDisk to be unopened), an `r` resumes it. For each read it writes one record to
 * stdout: the CLOCK_MONOTONIC time (process.hrtime, the same clock in every process) before and after,
 * offset, length asked, bytes read, and the crc32 of the part of each cluster read — the test checks them
 * against its timeline of mutations.
 *
 *   node timed-reader.js FILE SEED MAX_BYTES
 * Record: f64 t0 ns, f64 t1 ns, f64 offset, u32 length, u32 bytes read, u32 crc × clusters touched.
 */
import fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { rng } from './ref-disk.js';

const CS = 4096;
const [file, seedArg, maxArg] = process.argv.slice(2);
const r = rng(Number(seedArg));
const max = Number(maxArg);
const buf = Buffer.alloc(64 * 1024);
let stop = false;
let paused = false;
process.stdin.on('end', () => (stop = true));
process.stdin.on('data', (d: Buffer) => {
  for (const ch of d.toString()) {
    if (ch === 'p') paused = true;
    if (ch === 'r') {
      paused = false;
      setImmediate(loop);
    }
  }
});
process.stdin.resume();

function one(): void {
  const aligned = r() < 0.75;
  const len = aligned ? CS * (r() < 0.8 ? 1 : 1 + Math.floor(r() * 8)) : 1 + Math.floor(r() * 2 * CS);
  const off = aligned ? CS * Math.floor((r() * max) / CS) : Math.floor(r() * max);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  } catch {
    return; // between a rollback's check and its end the file is there; only an unmount ends this
  }
  const t0 = process.hrtime.bigint();
  const n = fs.readSync(fd, buf, 0, len, off);
  const t1 = process.hrtime.bigint();
  fs.closeSync(fd);
  const first = Math.floor(off / CS);
  const clusters = n === 0 ? 0 : Math.floor((off + n - 1) / CS) - first + 1;
  const rec = Buffer.alloc(32 + clusters * 4);
  rec.writeDoubleLE(Number(t0), 0);
  rec.writeDoubleLE(Number(t1), 8);
  rec.writeDoubleLE(off, 16);
  rec.writeUInt32LE(len, 24);
  rec.writeUInt32LE(n, 28);
  for (let k = 0; k < clusters; k++) {
    const c = (first + k) * CS;
    const from = Math.max(off, c);
    const to = Math.min(off + n, c + CS);
    rec.writeUInt32LE(crc32(buf.subarray(from - off, to - off)) >>> 0, 32 + k * 4);
  }
  process.stdout.write(rec);
}

// a few reads per turn of the loop, so that stdin's end is noticed
function loop(): void {
  if (stop || paused) return;
  for (let i = 0; i < 8; i++) one();
  setImmediate(loop);
}
loop();
