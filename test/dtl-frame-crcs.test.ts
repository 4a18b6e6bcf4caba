/**
 * The DTL's checksums computed once (issue 10): a cluster entry's checksum combined from the FUSE reader's
 * crc32 of the data, the AddEntries frame's checksum combined from its entries' (bridge.ts, frame.ts), and
 * the server's one-pass check of an AddEntries frame (messages.ts checkAddEntriesFrame). The wire format did
 * not change: golden bytes made by the build before this change (commit 8ca245c) are reproduced, frames made
 * the old way (one crc32 pass over the whole frame) are accepted, and any damage is still refused, as a
 * PROTOCOL error that says what is wrong. Random batches: seed printed, VPOOLFS_SEED replays one.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import test from 'ava';
import { DtlError } from '../dtl-client/errors.js';
import { encodeFrame, encodeFrameParts, FrameDecoder, HEADER_BYTES, MAGIC, Msg, type FrameCheck } from '../dtl-client/frame.js';
import { checkAddEntriesFrame, encodeClusterEntry, encodeDiscard, encodeEntry, encodeResize, Writer } from '../dtl-client/messages.js';
import { crc32Join } from '../util/crc32-combine.js';
import { rng } from './helpers/ref-disk.js';
import { runSeed } from './helpers/seed.js';

const protocol = { instanceOf: DtlError, code: 'PROTOCOL' } as const;
const SEED = runSeed();
const ROUNDS = Number(process.env.VPOOLFS_DTL_CRC_ROUNDS ?? 200);

const serverDecoder = () => new FrameDecoder(MAGIC, new Map<number, FrameCheck>([[Msg.AddEntries, checkAddEntriesFrame]]));
const prefix = (vdisk: string, count: number) => new Writer().str(vdisk).u32(count).done();

test('golden bytes: entries and AddEntries frames are the bytes the build before made', (t) => {
  const data = Buffer.alloc(4096);
  for (let i = 0; i < 4096; i++) data[i] = (i * 31 + 7) & 255;
  const recs = [encodeResize(3, 8192, 2), encodeDiscard(3, 1, 2, 2)];
  const small = Buffer.concat(encodeFrameParts(Msg.AddEntries, 5, [prefix('vd1', 2), ...recs], MAGIC, [undefined, crc32(recs[0]) >>> 0, undefined]));
  t.is(small.toString('hex'), '5444010b0500000043000000030076643102000000110000007a0093840103000000000000000000c04002000000190000008575589a0203000000000000000000f03f000000000000004002000000b2b92db7');
  const c = encodeClusterEntry(4, 77, data, crc32(data) >>> 0);
  t.is(c.rec.subarray(0, 21).toString('hex'), '0d1000000bd2f4bb00040000000000000000405340');
  t.true(c.rec.equals(encodeEntry(0, 4, 77, data)), 'with or without the known crc, the same record');
  const big = Buffer.concat(encodeFrameParts(Msg.AddEntries, 6, [prefix('vd1', 2), c.rec, recs[0]], MAGIC, [undefined, c.crc, undefined]));
  t.is(big.subarray(big.length - 4).toString('hex'), '72115988');
  t.is(createHash('sha256').update(big).digest('hex'), '331b11c7eec662e8e495dfe39e317c564935b2e2d14f6c333886d38155d41a8b');
  const [f] = serverDecoder().push(big);
  t.deepEqual(f.checked, { at: 9, tags: [4, 3] });
});

test(`random batches: combined checksums equal plain ones, old-style frames pass, every flipped bit is refused or, in the length field, leaves the frame incomplete (seed ${SEED})`, (t) => {
  const r = rng(SEED);
  t.log(`VPOOLFS_SEED=${SEED}`);
  for (let round = 0; round < ROUNDS; round++) {
    const n = 1 + Math.floor(r() * 6);
    const recs: Buffer[] = [];
    const crcs: Array<number | undefined> = [];
    const tags: number[] = [];
    for (let i = 0; i < n; i++) {
      const tag = Math.floor(r() * 2 ** 32);
      const kind = r();
      if (kind < 0.6) {
        const data = Buffer.alloc(4096);
        for (let k = 0; k < 64; k++) data[Math.floor(r() * 4096)] = Math.floor(r() * 256);
        const known = r() < 0.7 ? crc32(data) >>> 0 : undefined;
        const e = encodeClusterEntry(tag, Math.floor(r() * 2 ** 40), data, known);
        t.true(e.rec.equals(encodeEntry(0, tag, e.rec.readDoubleLE(13), data)));
        t.is(e.crc, crc32(e.rec) >>> 0);
        recs.push(e.rec);
        crcs.push(r() < 0.8 ? e.crc : undefined);
      } else {
        recs.push(kind < 0.8 ? encodeResize(tag, Math.floor(r() * 2 ** 40), 9) : encodeDiscard(tag, Math.floor(r() * 2 ** 30), 1 + Math.floor(r() * 1000), 9));
        crcs.push(undefined);
      }
      tags.push(tag);
    }
    const vdisk = `vd-${round}`;
    const parts = [prefix(vdisk, n), ...recs];
    const id = Math.floor(r() * 2 ** 32);
    const frame = Buffer.concat(encodeFrameParts(Msg.AddEntries, id, parts, MAGIC, [undefined, ...crcs]));
    const old = encodeFrame(Msg.AddEntries, id, Buffer.concat(parts));
    t.true(frame.equals(old), `round ${round}: the same bytes as a frame checksummed in one pass`);
    const [f] = serverDecoder().push(old);
    t.deepEqual(f.checked, { at: 2 + vdisk.length + 4, tags }, `round ${round}`);
    const bit = Math.floor(r() * frame.length * 8);
    const bad = Buffer.from(frame);
    bad[bit >> 3] ^= 1 << (bit & 7);
    const what = `round ${round}: bit ${bit} of ${frame.length * 8} flipped`;
    if (bit >> 3 >= 8 && bit >> 3 < HEADER_BYTES) {
      // the length field (bytes 8–11): a longer length makes the frame look incomplete (nothing yielded, as
      // dtl-frame.test.ts checks), a shorter one or one over the limit is refused
      try {
        t.is(serverDecoder().push(bad).length, 0, what);
      } catch (err) {
        t.is((err as { code?: string }).code, 'PROTOCOL', what);
      }
      continue;
    }
    t.throws(() => serverDecoder().push(bad), protocol, what);
  }
});

test('a frame sound in transit but carrying a damaged entry or a wrong count is refused for what it is', (t) => {
  const data = Buffer.alloc(4096, 1);
  const e = encodeClusterEntry(2, 10, data, 12345); // a wrong known crc: the entry's own checksum is wrong
  const f1 = encodeFrame(Msg.AddEntries, 1, Buffer.concat([prefix('vd', 1), e.rec]));
  t.throws(() => serverDecoder().push(f1), { ...protocol, message: 'entry 0: entry checksum mismatch' });
  const good = encodeEntry(0, 2, 10, data);
  t.throws(() => serverDecoder().push(encodeFrame(Msg.AddEntries, 1, Buffer.concat([prefix('vd', 2), good]))), { ...protocol, message: /entry 1: truncated/ });
  t.throws(() => serverDecoder().push(encodeFrame(Msg.AddEntries, 1, Buffer.concat([prefix('vd', 0), good]))), { ...protocol, message: /stray bytes after 0 entries/ });
  t.throws(() => serverDecoder().push(encodeFrame(Msg.AddEntries, 1, Buffer.from([3, 0, 0x76]))), { ...protocol, message: /truncated/ });
  t.throws(() => serverDecoder().push(encodeFrame(Msg.AddEntries, 1, Buffer.concat([prefix('vd', 0xffffffff), good]))), { ...protocol, message: /entry 1: truncated/ });
  // damaged in transit: reported as a bad frame, not as whatever the damaged entry looks like
  const frame = encodeFrame(Msg.AddEntries, 1, Buffer.concat([prefix('vd', 1), good]));
  frame[12 + 7] ^= 0x40; // the entry's length field
  t.throws(() => serverDecoder().push(frame), { ...protocol, message: 'frame checksum mismatch' });
  // other message types still get the decoder's own check
  const reg = encodeFrame(Msg.Register, 1, Buffer.from('x'));
  reg[12] ^= 1;
  t.throws(() => serverDecoder().push(reg), { ...protocol, message: 'frame checksum mismatch' });
});

test('crc32Join is crc32(A ‖ B) for many lengths, past its cache of combines too', (t) => {
  const r = rng(SEED ^ 0x5a5a);
  for (let i = 0; i < 150; i++) {
    const a = Buffer.from(Array.from({ length: Math.floor(r() * 50) }, () => Math.floor(r() * 256)));
    const b = Buffer.from(Array.from({ length: 1 + i * 7 + Math.floor(r() * 5) }, () => Math.floor(r() * 256)));
    t.is(crc32Join(crc32(a), crc32(b), b.length), crc32(Buffer.concat([a, b])) >>> 0, `|B| = ${b.length}`);
  }
});
