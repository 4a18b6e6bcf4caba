/**
 * A writer in a process of its own (test/fuse-concurrent-writes.test.ts): `COUNT` O_DIRECT writes to one
 * file, `INFLIGHT` at a time (libuv's threads: concurrent requests), at seeded random places inside SIZE
 * bytes, half of them in a small hot region shared with the other writers (overlapping concurrent writes):
 * mostly 4 KiB cluster-aligned, some several clusters, some 512-byte-aligned pieces of clusters
 * (read-modify-write in the volume). Every 512-byte sector written says who wrote it (sectorBytes): the
 * checker identifies each sector of the image by its content. To stdout, one line per event, written before
 * the write is issued and after it returned (CLOCK_MONOTONIC ns, the same clock in every process):
 *
 *   b SEQ OFFSET LENGTH T0      (about to write)
 *   e SEQ T1                    (acknowledged)
 *
 * It stops at the first error (the daemon killed under it) and exits 0 either way.
 *
 *   node concurrent-writer.js FILE SEED WRITER_ID COUNT SIZE INFLIGHT
 */
import fs from 'node:fs';
import { rng } from './ref-disk.js';

export const SECTOR = 512;
const MAGIC = 0x57524954;

/** The 512 bytes writer `writer`'s write `seq` puts in sector `sector`: a 16-byte header, repeated. */
export function sectorBytes(writer: number, seq: number, sector: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt32LE(writer, 4);
  h.writeUInt32LE(seq, 8);
  h.writeUInt32LE(sector, 12);
  return Buffer.alloc(SECTOR, h);
}

/** Who claims to have written `s` (a sector read back), or undefined when it is not such a sector. */
export function sectorClaim(s: Buffer): { writer: number; seq: number; sector: number } | undefined {
  if (s.readUInt32LE(0) !== MAGIC) return undefined;
  return { writer: s.readUInt32LE(4), seq: s.readUInt32LE(8), sector: s.readUInt32LE(12) };
}

/** Writer `writer`'s write `seq`: where, how long. The same for the checker (it needs no log of the data). */
export function plan(seed: number, writer: number, count: number, size: number): Array<{ off: number; len: number }> {
  const r = rng((seed ^ Math.imul(writer + 1, 0x9e3779b1)) >>> 0);
  const hot = Math.min(size, 256 * 1024);
  const out: Array<{ off: number; len: number }> = [];
  for (let i = 0; i < count; i++) {
    const span = r() < 0.5 ? hot : size;
    const kind = r();
    // 4 KiB; 2–16 clusters; 1–24 sectors (pieces of clusters)
    const unit = kind < 0.8 ? 4096 : SECTOR;
    const want = kind < 0.6 ? 4096 : kind < 0.8 ? 4096 * (2 + Math.floor(r() * 15)) : SECTOR * (1 + Math.floor(r() * 24));
    const len = Math.min(want, span - (span % unit));
    const off = unit * Math.floor((r() * (span - len + 1)) / unit);
    out.push({ off, len });
  }
  return out;
}

async function main(): Promise<void> {
  const [file, seedArg, idArg, countArg, sizeArg, inflightArg] = process.argv.slice(2);
  const writer = Number(idArg);
  const ops = plan(Number(seedArg), writer, Number(countArg), Number(sizeArg));
  const fh = await fs.promises.open(file, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < ops.length) {
      const seq = next++;
      const { off, len } = ops[seq];
      const data = Buffer.alloc(len);
      for (let k = 0; k < len / SECTOR; k++) sectorBytes(writer, seq, off / SECTOR + k).copy(data, k * SECTOR);
      process.stdout.write(`b ${seq} ${off} ${len} ${process.hrtime.bigint()}\n`);
      try {
        const { bytesWritten } = await fh.write(data, 0, len, off);
        if (bytesWritten !== len) throw new Error(`short write: ${bytesWritten} of ${len}`);
      } catch (err) {
        failed = true;
        process.stderr.write(`writer ${writer} stopped at write ${seq}: ${(err as Error).message}\n`);
        return;
      }
      process.stdout.write(`e ${seq} ${process.hrtime.bigint()}\n`);
    }
  };
  await Promise.all(Array.from({ length: Number(inflightArg) }, worker));
  await fh.close().catch(() => undefined);
}

if (process.argv[1]?.endsWith('concurrent-writer.js')) {
  main().catch((err) => {
    process.stderr.write(`writer failed: ${(err as Error).stack}\n`);
    process.exit(0);
  });
}
