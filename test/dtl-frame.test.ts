/** Unit tests of the DTL frame codec and the entry records: round trips, and every kind of damage refused. */
import test from 'ava';
import { DtlError } from '../dtl-client/errors.js';
import { encodeFrame, encodeFrameParts, FrameDecoder, HEADER_BYTES, MAX_PAYLOAD, Msg } from '../dtl-client/frame.js';
import { decodeEntry, encodeDiscard, encodeEntry, encodeResize, entryLength, Reader, splitEntries, Writer } from '../dtl-client/messages.js';

const protocol = { instanceOf: DtlError, code: 'PROTOCOL' } as const;

test('frames round-trip, whole or fed one byte at a time', (t) => {
  const frames = [encodeFrame(Msg.Register, 7, Buffer.from('hello')), encodeFrame(Msg.Flush, 0xfffffff0, Buffer.alloc(0)), encodeFrame(Msg.AddEntries, 3, Buffer.alloc(70000, 9))];
  const all = Buffer.concat(frames);
  const whole = new FrameDecoder().push(all);
  t.deepEqual(whole.map((f) => [f.type, f.id, f.payload.length]), [[Msg.Register, 7, 5], [Msg.Flush, 0xfffffff0, 0], [Msg.AddEntries, 3, 70000]]);
  const d = new FrameDecoder();
  const got = [];
  for (let i = 0; i < all.length; i++) got.push(...d.push(all.subarray(i, i + 1)));
  t.is(got.length, 3);
  t.is(got[0].payload.toString(), 'hello');
  t.true(got[2].payload.equals(Buffer.alloc(70000, 9)));
  t.is(d.pending, 0);
});

test('a frame written in parts is the same bytes as one written whole', (t) => {
  const parts = [Buffer.from('ab'), Buffer.alloc(0), Buffer.alloc(5000, 7), Buffer.from('z')];
  t.true(Buffer.concat(encodeFrameParts(Msg.AddEntries, 9, parts)).equals(encodeFrame(Msg.AddEntries, 9, Buffer.concat(parts))));
  t.throws(() => encodeFrameParts(Msg.AddEntries, 1, [Buffer.alloc(MAX_PAYLOAD), Buffer.alloc(1)]), { instanceOf: DtlError, code: 'INVALID' });
});

test('frames split over many odd-sized chunks come out whole and in order', (t) => {
  const frames = Array.from({ length: 50 }, (_, i) => encodeFrame(Msg.AddEntries, i, Buffer.alloc(i * 997, i)));
  const all = Buffer.concat(frames);
  const d = new FrameDecoder();
  const got = [];
  for (let pos = 0, k = 1; pos < all.length; pos += k, k = (k * 7 + 3) % 9000 + 1) got.push(...d.push(all.subarray(pos, pos + k)));
  t.deepEqual(got.map((f) => f.id), frames.map((_, i) => i));
  t.true(got.every((f, i) => f.payload.equals(Buffer.alloc(i * 997, i))));
});

test('a flipped bit anywhere in a frame is refused', (t) => {
  const f = encodeFrame(Msg.AddEntries, 1, Buffer.from('some payload bytes'));
  for (let i = 0; i < f.length; i++) {
    const bad = Buffer.from(f);
    bad[i] ^= 0x10;
    // a flip in the length field may instead make the frame look incomplete: then it must yield nothing
    try {
      t.is(new FrameDecoder().push(bad).length, 0, `byte ${i}`);
      t.true(i >= 8 && i < 12, `byte ${i}: only a length flip may pass as incomplete`);
    } catch (err) {
      t.is((err as DtlError).code, 'PROTOCOL');
    }
  }
});

test('bad magic, version and oversized length are refused before the payload arrives', (t) => {
  const f = encodeFrame(Msg.Flush, 1, Buffer.alloc(4));
  const magic = Buffer.from(f);
  magic.writeUInt16LE(0x1234, 0);
  t.throws(() => new FrameDecoder().push(magic.subarray(0, HEADER_BYTES)), protocol);
  const version = Buffer.from(f);
  version[2] = 9;
  t.throws(() => new FrameDecoder().push(version.subarray(0, HEADER_BYTES)), { ...protocol, message: /version 9/ });
  const big = Buffer.from(f);
  big.writeUInt32LE(MAX_PAYLOAD + 1, 8);
  t.throws(() => new FrameDecoder().push(big.subarray(0, HEADER_BYTES)), { ...protocol, message: /over the limit/ });
  t.throws(() => encodeFrame(Msg.AddEntries, 1, Buffer.alloc(MAX_PAYLOAD + 1)), { instanceOf: DtlError, code: 'INVALID' });
});

test('a truncated frame yields nothing until the rest arrives', (t) => {
  const f = encodeFrame(Msg.Clear, 5, Buffer.from('abc'));
  const d = new FrameDecoder();
  t.deepEqual(d.push(f.subarray(0, f.length - 1)), []);
  t.is(d.push(f.subarray(f.length - 1)).length, 1);
});

test('entries round-trip and carry their own checksum', (t) => {
  const data = Buffer.alloc(4096, 0xab);
  const c = encodeEntry(0, 17, 123456789, data);
  const r = encodeEntry(1, 18, 10 * 2 ** 30);
  const l = entryLength(c, 0);
  t.true(l.ok);
  const e = decodeEntry(c, 0, (l as { length: number }).length);
  t.like(e, { kind: 'cluster', tag: 17, address: 123456789 });
  t.true(e.kind === 'cluster' && e.data.equals(data));
  t.deepEqual(decodeEntry(r, 0, r.length), { kind: 'resize', tag: 18, size: 10 * 2 ** 30, tlog: 0 });
  const rt = encodeResize(19, 4096, 77);
  t.deepEqual(decodeEntry(rt, 0, rt.length), { kind: 'resize', tag: 19, size: 4096, tlog: 77 });
  const dc = encodeDiscard(20, 2 ** 33 + 1, 2 ** 34, 78);
  t.true(entryLength(dc, 0).ok);
  t.deepEqual(decodeEntry(dc, 0, dc.length), { kind: 'discard', tag: 20, first: 2 ** 33 + 1, count: 2 ** 34, tlog: 78 });
  t.like(entryLength(encodeDiscard(20, 5, 0, 78), 0), { ok: false, complete: true, reason: 'bad discard entry' });
  t.like(entryLength(encodeEntry(2, 20, 5), 0), { ok: false, complete: true, reason: 'bad discard entry' });
  t.like(entryLength(encodeEntry(3 as 2, 20, 5), 0), { ok: false, complete: true, reason: 'unknown entry kind 3' });
  const run = Buffer.concat([c, r]);
  t.deepEqual(splitEntries(run, 0, 2).map((x) => x.tag), [17, 18]);
  const bad = Buffer.from(c);
  bad[100] ^= 1;
  t.like(entryLength(bad, 0), { ok: false, complete: true, reason: 'entry checksum mismatch' });
  t.like(entryLength(c.subarray(0, 50), 0), { ok: false, complete: false });
  t.throws(() => splitEntries(run, 0, 3), protocol);
  t.throws(() => splitEntries(Buffer.concat([run, Buffer.from([1])]), 0, 2), { ...protocol, message: /stray/ });
});

test('a message read past its end is a PROTOCOL error', (t) => {
  const b = new Writer().str('vd').u32(5).done();
  const r = new Reader(b);
  t.is(r.str(), 'vd');
  t.is(r.u32(), 5);
  t.throws(() => r.u8(), protocol);
  const r2 = new Reader(new Writer().u16(500).done());
  t.throws(() => r2.str(), protocol);
});
