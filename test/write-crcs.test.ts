/**
 * The crc32 of a WRITE's clusters computed in a kernel-engine reader thread and used by the main thread's
 * slot headers (fuse/kernel/write-crcs.ts, volume/datapath/write-cache/known-crcs.ts, util/crc32-combine.ts), in
 * memory: the combine equals crc32 of the concatenation, the crcs carried behind a request land on exactly
 * the clusters they were computed for (not on a copy, not on a misaligned view), and a slot header built
 * with them is the one built without. The mount tests (fuse-kernel-fast-write.test.ts) run it end to end.
 */
import test from 'ava';
import { randomBytes, randomInt } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { adoptWriteCrcs, computeWriteCrcs, withCrcsLength } from '../fuse/kernel/write-crcs.js';
import { READ_BUFFER_SIZE, MAX_WRITE, SIZE } from '../fuse/kernel/protocol.js';
import { combineFor } from '../util/crc32-combine.js';
import { knownClusterCrc } from '../volume/datapath/write-cache/known-crcs.js';
import { encodeSlotHeader, SLOT_HEADER } from '../volume/datapath/formats/sco-format.js';

const CS = 4096;
const DATA = SIZE.IN_HEADER + SIZE.WRITE_IN;

test('combineFor(len)(crc32(A), crc32(B)) is crc32(A ‖ B)', (t) => {
  for (const len of [0, 1, 3, 24, 4096, 4097, 65536, randomInt(1, 100000)]) {
    const combine = combineFor(len);
    for (let i = 0; i < 5; i++) {
      const a = randomBytes(randomInt(0, 200));
      const b = randomBytes(len);
      t.is(combine(crc32(a) >>> 0, crc32(b) >>> 0), crc32(Buffer.concat([a, b])) >>> 0, `len ${len}`);
    }
  }
});

/** A WRITE request of `size` bytes at `offset` in a read buffer, as a reader thread has it. */
function writeRequest(offset: number, size: number): { buf: Buffer; n: number } {
  const buf = Buffer.alloc(READ_BUFFER_SIZE);
  const n = DATA + size;
  buf.writeUInt32LE(n, 0);
  buf.writeUInt32LE(16, 4); // WRITE
  buf.writeUInt32LE(offset % 2 ** 32, SIZE.IN_HEADER + 8);
  buf.writeUInt32LE(Math.floor(offset / 2 ** 32), SIZE.IN_HEADER + 12);
  buf.writeUInt32LE(size, SIZE.IN_HEADER + 16);
  randomBytes(size).copy(buf, DATA);
  return { buf, n };
}

test('the crcs a reader puts behind a WRITE are found for exactly its whole clusters on the main side', (t) => {
  const cases: Array<[number, number]> = [[0, CS], [CS * 7, CS * 3], [100, CS * 2], [100, CS * 2 - 100], [5, 10], [2 ** 33 + 512, CS * 5], [0, MAX_WRITE]];
  for (const [offset, size] of cases) {
    const { buf, n } = writeRequest(offset, size);
    const at = computeWriteCrcs(buf, n);
    const lead = (CS - (offset % CS)) % CS;
    const whole = size > lead ? Math.floor((size - lead) / CS) : 0;
    if (whole === 0) {
      t.is(at, 0, `no whole cluster in ${size} bytes at ${offset}`);
      continue;
    }
    t.true(at >= n, 'behind the request');
    // the copy a small request travels in, or the whole buffer of a big one
    const ab = n > 64 * 1024 ? buf.buffer : buf.buffer.slice(0, withCrcsLength(buf, n, at));
    const req = Buffer.from(ab, 0, n);
    adoptWriteCrcs(req, at);
    const data = req.subarray(DATA, DATA + size);
    for (let i = 0; i < whole; i++) {
      const c = data.subarray(lead + i * CS, lead + (i + 1) * CS);
      t.is(knownClusterCrc(c), crc32(c) >>> 0, `cluster ${i} of ${size} bytes at ${offset}`);
      const h1 = Buffer.alloc(SLOT_HEADER);
      const h2 = Buffer.alloc(SLOT_HEADER);
      encodeSlotHeader(h1, 7, 3, i, offset + lead + i * CS, c);
      encodeSlotHeader(h2, 7, 3, i, offset + lead + i * CS, c, knownClusterCrc(c));
      t.deepEqual(h2, h1, 'the slot header built with the carried crc is the one built without');
      t.is(knownClusterCrc(Buffer.from(c)), undefined, 'a copy (a merged cluster) finds nothing');
    }
    if (size >= lead + CS + 1) t.is(knownClusterCrc(data.subarray(lead + 1, lead + 1 + CS)), undefined, 'a misaligned view finds nothing');
    if (lead > 0) t.is(knownClusterCrc(data.subarray(0, CS)), undefined, 'the head before the first whole cluster finds nothing');
  }
});
