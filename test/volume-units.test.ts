/**
 * Unit tests of the volume layer's building blocks, each on its own: the cluster map (cluster-map.ts),
 * the TLog format (tlog-format.ts) and the SCO slot format (sco-format.ts).
 */
import test from 'ava';
import { ClusterMap, PAGE_CLUSTERS } from '../volume/datapath/formats/cluster-map.js';
import { decodeRecords, encodeRecord, RecordType, type TLogRecord } from '../volume/datapath/formats/tlog-format.js';
import { checkSlot, encodeSlotHeader, namespaceTag, slotAddress, SLOT_HEADER, SLOT_SIZE } from '../volume/datapath/formats/sco-format.js';
import { crc32 } from 'node:zlib';
import { pattern } from './helpers/vpool.js';

const MiB = 2 ** 20;
/** The last cluster of a 64 TiB vDisk. */
const LAST_CLUSTER = 2 ** 34 - 1;

// ---- ClusterMap -----------------------------------------------------------------------------------

test('cluster map: set and get across pages and beyond 2^32 clusters', (t) => {
  const m = new ClusterMap();
  const addrs = [0, 1, PAGE_CLUSTERS - 1, PAGE_CLUSTERS, 5 * PAGE_CLUSTERS + 7, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, 2 ** 33 + PAGE_CLUSTERS + 3, LAST_CLUSTER];
  addrs.forEach((a, i) => m.set(a, i + 1, (i * 977) & 0xffff, i % 4));
  t.is(m.mappedClusters, addrs.length);
  addrs.forEach((a, i) => {
    t.deepEqual(m.get(a), { sco: i + 1, slot: (i * 977) & 0xffff, depth: i % 4 }, `address ${a}`);
    t.is(m.scoOf(a), i + 1);
  });
  // neighbours are not mapped: an address bug that folds 2^32 + 5 onto 5 (or onto another page) shows here
  for (const a of [2, PAGE_CLUSTERS + 1, 5, 2 ** 32 + 4, 2 ** 32 + 6, 2 ** 33 + 3, LAST_CLUSTER - 1]) t.is(m.get(a), null, `address ${a}`);
  t.deepEqual([...m.entries()].map(([a]) => a), [...addrs].sort((x, y) => x - y));
});

test('cluster map: overwriting does not count twice; clear counts down once', (t) => {
  const m = new ClusterMap();
  m.set(10, 1, 0);
  m.set(10, 2, 3);
  t.is(m.mappedClusters, 1);
  t.deepEqual(m.get(10), { sco: 2, slot: 3, depth: 0 });
  m.clear(10);
  m.clear(10);
  m.clear(99999); // a page never allocated
  t.is(m.mappedClusters, 0);
  t.is(m.get(10), null);
  m.set(0xffff, 7, 0xffff, 0xff);
  t.deepEqual(m.get(0xffff), { sco: 7, slot: 0xffff, depth: 0xff });
});

test('cluster map: clearFrom mid-page, page-aligned and beyond 2^32 keeps exactly what lies below', (t) => {
  const m = new ClusterMap();
  const addrs: number[] = [];
  for (let a = 0; a < 4 * PAGE_CLUSTERS; a += 3) addrs.push(a);
  const high = [2 ** 32 + 1, 2 ** 32 + PAGE_CLUSTERS + 2, 2 ** 33];
  for (const a of [...addrs, ...high]) m.set(a, 1, 0);
  t.is(m.mappedClusters, addrs.length + high.length);

  m.clearFrom(2 ** 32 + PAGE_CLUSTERS); // page-aligned, high
  t.is(m.get(2 ** 32 + 1)?.sco, 1);
  t.is(m.get(2 ** 32 + PAGE_CLUSTERS + 2), null);
  t.is(m.get(2 ** 33), null);
  t.is(m.mappedClusters, addrs.length + 1);

  const cut = 2 * PAGE_CLUSTERS + 500; // mid-page
  m.clearFrom(cut);
  const kept = addrs.filter((a) => a < cut);
  t.is(m.mappedClusters, kept.length);
  t.deepEqual([...m.entries()].map(([a]) => a), kept);
  const below = kept[kept.length - 1];
  t.true(below >= cut - 3);
  t.is(m.get(below)?.sco, 1, 'the last cluster below the cut stays');
  t.is(m.get(below + 3), null, 'the first one at or past the cut goes');

  m.clearFrom(PAGE_CLUSTERS); // page-aligned: pages 1 and 2 go
  t.is(m.mappedClusters, addrs.filter((a) => a < PAGE_CLUSTERS).length);
  t.is(m.pageCount, 1);
  m.clearFrom(0);
  t.is(m.mappedClusters, 0);
  t.is(m.pageCount, 0);
  t.deepEqual([...m.entries()], []);
});

test('cluster map: clearRange unmaps exactly the range, across pages and beyond 2^32, and counts what it cleared', (t) => {
  const m = new ClusterMap();
  const hi = 2 ** 32 + 5;
  const written = [0, 1, 1023, 1024, 1025, 5000, hi - 1, hi, hi + 1];
  for (const a of written) m.set(a, 7, a % 100);
  m.takeDirty();
  t.true(m.anyMappedIn(1020, 10));
  t.false(m.anyMappedIn(2, 1021));
  t.deepEqual(m.mappedIn(1, 4999), [1, 1023, 1024, 1025]);
  t.deepEqual(m.mappedIn(1, 5000), [1, 1023, 1024, 1025, 5000]);
  t.is(m.clearRange(1, 1024), 3, 'clusters 1, 1023 and 1024');
  t.deepEqual([...m.entries()].map(([a]) => a), [0, 1025, 5000, hi - 1, hi, hi + 1]);
  t.deepEqual(m.takeDirty().map(([p]) => p).sort((a, b) => a - b), [0, 1], 'the two pages it changed');
  t.is(m.clearRange(hi, 2 ** 40), 2, 'a huge range walks only the pages that exist');
  t.is(m.takeDirty().length, 1);
  t.is(m.clearRange(10_000, 5), 0);
  t.deepEqual(m.takeDirty(), [], 'a range of nothing mapped changes no page');
  t.is(m.mappedClusters, 4);
  t.deepEqual([...m.entries()].map(([a]) => a), [0, 1025, 5000, hi - 1]);
});

test('cluster map: takeDirty returns each changed page once, null for a page that went away', (t) => {
  const m = new ClusterMap();
  t.deepEqual(m.takeDirty(), []);
  m.set(1, 1, 0);
  m.set(2, 1, 1);
  m.set(2 ** 32 + 3, 2, 0);
  const first = m.takeDirty();
  t.deepEqual(first.map(([p]) => p).sort((a, b) => a - b), [0, 2 ** 32 / PAGE_CLUSTERS]);
  const page0 = first.find(([p]) => p === 0)![1]!;
  t.is(page0.length, PAGE_CLUSTERS * 2);
  t.is(page0[2], 1); // word 0 of address 1
  t.is(page0[5], 1); // word 1 (slot) of address 2
  t.deepEqual(m.takeDirty(), [], 'nothing changed since');

  m.clear(1);
  t.deepEqual(m.takeDirty().map(([p, w]) => [p, w === null]), [[0, false]]);
  m.clearFrom(PAGE_CLUSTERS);
  const gone = m.takeDirty();
  t.deepEqual(gone, [[2 ** 32 / PAGE_CLUSTERS, null]]);

  // a page persisted and loaded back gives the same entries and counts
  const m2 = new ClusterMap();
  m2.loadPage(0, new Uint32Array(page0));
  t.is(m2.mappedClusters, 1); // page0 is the live page: address 1 was cleared since, address 2 remains
  t.deepEqual(m2.get(2), { sco: 1, slot: 1, depth: 0 });
  m2.loadPage(0, new Uint32Array(PAGE_CLUSTERS * 2)); // replaced by an empty page: the count follows
  t.is(m2.mappedClusters, 0);
  t.throws(() => m2.loadPage(1, new Uint32Array(10)));
});

test('cluster map: a fully written 10 GiB vDisk (2,621,440 clusters) takes about 20 MiB', (t) => {
  const before = process.memoryUsage().arrayBuffers;
  const m = new ClusterMap();
  const n = (10 * 2 ** 30) / 4096;
  t.is(n, 2_621_440);
  for (let a = 0; a < n; a++) m.set(a, 1 + (a >>> 10), a & 1023);
  t.is(m.mappedClusters, n);
  t.is(m.pageCount, n / PAGE_CLUSTERS);
  const bytes = m.memoryBytes();
  t.true(bytes >= 20 * MiB && bytes <= 21 * MiB, `memoryBytes ${bytes}`);
  // the pages are really typed arrays (not JS objects): ArrayBuffer memory grew by about that much
  const grown = process.memoryUsage().arrayBuffers - before;
  t.true(grown >= 10 * MiB && grown <= 2 * bytes, `array buffers grew by ${grown}`);
  t.deepEqual(m.get(n - 1), { sco: 1 + ((n - 1) >>> 10), slot: (n - 1) & 1023, depth: 0 });
});

// ---- TLog format ----------------------------------------------------------------------------------

function sampleRecords(): TLogRecord[] {
  return [
    { type: RecordType.Header, vdiskId: 'c0ffee00-1234-4321-8888-abcdefabcdef', tlog: 0xfffffffe },
    { type: RecordType.Sco, sco: 1, count: 3, crc: 0xdeadbeef, addresses: Float64Array.from([0, 2 ** 32 + 7, 2 ** 34 - 1]) },
    { type: RecordType.Resize, size: 64 * 2 ** 40 },
    { type: RecordType.Sco, sco: 2, count: 0, crc: 0, addresses: new Float64Array(0) },
    { type: RecordType.Resize, size: 4097 },
    { type: RecordType.Discard, first: 0, count: 1 },
    { type: RecordType.Discard, first: 2 ** 34 - 5, count: 2 ** 34 },
    { type: RecordType.Sco, sco: 0xffffffff, count: 1, crc: 1, addresses: Float64Array.from([-1]) },
  ];
}

test('tlog: encode then decode gives the same records, every byte accounted for', (t) => {
  const recs = sampleRecords();
  const buf = Buffer.concat(recs.map(encodeRecord));
  const d = decodeRecords(buf);
  t.is(d.error, null);
  t.is(d.validBytes, buf.length);
  t.deepEqual(d.records, recs);
  t.deepEqual(decodeRecords(Buffer.alloc(0)), { records: [], validBytes: 0, error: null });
});

test('tlog: a torn tail at every length keeps the whole records before it and says where it stopped', (t) => {
  const frames = sampleRecords().map(encodeRecord);
  const buf = Buffer.concat(frames);
  const ends: number[] = [];
  let pos = 0;
  for (const f of frames) ends.push((pos += f.length));
  for (let cut = 1; cut < buf.length; cut++) {
    const d = decodeRecords(buf.subarray(0, cut));
    const whole = ends.filter((e) => e <= cut).length;
    const valid = whole === 0 ? 0 : ends[whole - 1];
    if (d.records.length !== whole || d.validBytes !== valid || (d.error === null) !== (cut === valid)) {
      t.fail(`cut at ${cut}: ${d.records.length} records, validBytes ${d.validBytes}, error ${d.error}; want ${whole}, ${valid}`);
      return;
    }
  }
  t.pass();
});

test('tlog: a flipped byte anywhere stops decoding at the record it hit, never returning it', (t) => {
  const frames = sampleRecords().map(encodeRecord);
  const buf = Buffer.concat(frames);
  let start = 0;
  for (let f = 0; f < frames.length; f++) {
    for (let i = 0; i < frames[f].length; i++) {
      const bad = Buffer.from(buf);
      bad[start + i] ^= 0x5a;
      const d = decodeRecords(bad);
      if (d.error === null || d.records.length !== f || d.validBytes !== start) {
        t.fail(`flip in record ${f} byte ${i}: error ${d.error}, ${d.records.length} records, validBytes ${d.validBytes}`);
        return;
      }
    }
    start += frames[f].length;
  }
  t.pass();
});

/** A frame with a correct checksum around an arbitrary body (what a buggy writer could leave). */
function frame(body: Buffer): Buffer {
  const f = Buffer.alloc(8 + body.length);
  f.writeUInt32LE(body.length, 0);
  f.writeUInt32LE(crc32(body) >>> 0, 4);
  body.copy(f, 8);
  return f;
}

function discardBody(first: number, count: number): Buffer {
  const b = Buffer.alloc(17);
  b[0] = RecordType.Discard;
  b.writeDoubleLE(first, 1);
  b.writeDoubleLE(count, 9);
  return b;
}

test('tlog: a well-framed record with a short or malformed body is an error, not an exception', (t) => {
  const good = encodeRecord({ type: RecordType.Resize, size: 8192 });
  const bodies = [
    Buffer.from([RecordType.Sco]), // no SCO number, no count
    Buffer.from([RecordType.Sco, 1, 0, 0, 0, 5]), // count cut short
    Buffer.from([RecordType.Sco, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]), // count 2, no addresses
    Buffer.from([RecordType.Header]), // no id length
    Buffer.from([RecordType.Header, 200, 0, 65]), // id length past the end
    Buffer.from([RecordType.Resize, 1, 2]),
    Buffer.from([RecordType.Discard, 1, 2]), // cut short
    discardBody(5, 0), // nothing to discard
    discardBody(-1, 3), // a negative address
    discardBody(0.5, 3), // not an address
    Buffer.from([99, 1, 2, 3]),
  ];
  for (const body of bodies) {
    const buf = Buffer.concat([good, frame(body)]);
    let d: ReturnType<typeof decodeRecords> | undefined;
    t.notThrows(() => { d = decodeRecords(buf); }, `body ${body.toString('hex')}`);
    if (d === undefined) continue;
    t.is(d.records.length, 1, `body ${body.toString('hex')}`);
    t.is(d.validBytes, good.length);
    t.not(d.error, null);
  }
});

// ---- SCO slot format ------------------------------------------------------------------------------

function slot(tag: number, sco: number, index: number, address: number, data: Buffer, lead = 0): Buffer {
  const buf = Buffer.alloc(lead + SLOT_SIZE);
  encodeSlotHeader(buf.subarray(lead, lead + SLOT_HEADER), tag, sco, index, address, data);
  data.copy(buf, lead + SLOT_HEADER);
  return buf;
}

test('sco format: a sound slot passes, its address survives beyond 2^32', (t) => {
  const tag = namespaceTag('vdisk-a');
  t.not(tag, namespaceTag('vdisk-b'));
  const data = pattern(1, 4096);
  for (const address of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 12345, 2 ** 34 - 1]) {
    const buf = slot(tag, 7, 3, address, data, SLOT_SIZE);
    t.is(checkSlot(buf, SLOT_SIZE, tag, 7, 3, address), null);
    t.is(checkSlot(buf, SLOT_SIZE, tag, 7, 3, -1), null, 'address unknown (recovery scan)');
    t.is(slotAddress(buf, SLOT_SIZE), address);
  }
});

test('sco format: checkSlot names each kind of mismatch', (t) => {
  const tag = namespaceTag('vdisk-a');
  const data = pattern(2, 4096);
  const address = 2 ** 32 + 9;
  const good = slot(tag, 7, 3, address, data);
  const check = (buf: Buffer, over: Partial<{ tag: number; sco: number; slot: number; address: number }> = {}): string | null =>
    checkSlot(buf, 0, over.tag ?? tag, over.sco ?? 7, over.slot ?? 3, over.address ?? address);
  t.is(check(good), null);
  t.is(check(good.subarray(0, SLOT_SIZE - 1)), 'short slot');
  t.is(check(Buffer.alloc(0)), 'short slot');
  t.is(check(Buffer.alloc(SLOT_SIZE)), 'bad magic', 'an all-zero slot (a hole in a sparse file)');
  const flip = (pos: number): Buffer => {
    const b = Buffer.from(good);
    b[pos] ^= 0x01;
    return b;
  };
  t.is(check(flip(0)), 'bad magic');
  for (const pos of [4, 8, 12, 16, 20, 24, 28, SLOT_HEADER, SLOT_HEADER + 2048, SLOT_SIZE - 1]) {
    t.is(check(flip(pos)), 'checksum mismatch', `flipped byte ${pos}`);
  }
  t.is(check(good, { tag: namespaceTag('vdisk-b') }), 'wrong namespace');
  t.is(check(good, { sco: 8 }), 'wrong SCO');
  t.is(check(good, { slot: 4 }), 'wrong slot');
  t.is(check(good, { address: address + 1 }), 'wrong address');
  t.is(check(good, { address: 9 }), 'wrong address', 'same low 32 bits, other high word');
  // a slot copied whole to another place of another SCO is sound by itself but not where the map points
  t.is(check(slot(tag, 7, 4, address, data)), 'wrong slot');
  t.is(check(slot(tag, 6, 3, address, data)), 'wrong SCO');
});
