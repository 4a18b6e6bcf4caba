/**
 * The write cache's own durability (volume/datapath/write-cache/local-cache.ts), through a fault-injecting CacheIo
 * (helpers/faulty-io.ts): what an fdatasync really covered, failed fdatasyncs, reads racing an eviction.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalCache } from '../volume/datapath/write-cache/local-cache.js';
import { namespaceTag } from '../volume/datapath/formats/sco-format.js';
import { RecordType } from '../volume/datapath/formats/tlog-format.js';
import { FaultyIo } from './helpers/faulty-io.js';
import { until } from './helpers/until.js';

function cacheOn(t: import('ava').ExecutionContext, io: FaultyIo): LocalCache {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-lc-'));
  const c = new LocalCache(path.join(root, 'v'), 'v', namespaceTag('v'), 8, 2, { onScoClosed() {}, onTlogClosed() {} }, io);
  t.teardown(() => {
    try { c.close(); } catch { /* closed by the test */ }
    fs.rmSync(root, { recursive: true, force: true });
  });
  c.create(1, 1);
  return c;
}

test('a TLog closed while an fdatasync of its journal is queued is on disk when the sync resolves (no fd closed and reused under it)', async (t) => {
  const io = new FaultyIo();
  const c = cacheOn(t, io);
  await c.syncLocal();
  c.appendRecord({ type: RecordType.Resize, size: 12345 });
  const release = io.holdSyncs();
  const first = c.syncLocal(); // queues the journal's fdatasync (held)
  await until('the journal fdatasync waits at the gate', () => io.held > 0);
  c.closeTlog(); // TLog 1 closed, TLog 2 opened: today TLog 1's descriptor is closed and its number reused
  const second = c.syncLocal();
  release();
  await first;
  await second;
  const closed = c.tlogPath(1);
  t.deepEqual(io.syncedContent(closed), fs.readFileSync(closed), 'the closed TLog (with its resize record) was fdatasynced');
});

test('a read racing the eviction of a SCO does not reopen it and hold its disk space', async (t) => {
  const io = new FaultyIo();
  const c = cacheOn(t, io);
  const data = Array.from({ length: 8 }, (_, i) => Buffer.alloc(4096, i + 1));
  c.appendClusters(data.map((_, i) => i), data, () => {}); // fills SCO 1 (8 clusters): closed
  await c.syncLocal();
  const file = c.scoPath(1);
  t.true(c.evictSco(1));
  // the unlink runs off the event loop: a read now still finds the file
  const got = c.readSlots(1, 0, 1);
  t.is(got, null, 'an evicted SCO reads from the backend, not from a file being unlinked');
  for (const deadline = Date.now() + 30_000; fs.existsSync(file) && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 5));
  const held = fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(file);
    } catch {
      return false;
    }
  });
  t.deepEqual(held, [], 'no descriptor keeps the unlinked SCO (and its space) alive');
});
