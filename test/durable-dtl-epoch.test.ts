/**
 * The DTL server's registration epoch (dtl-client/store.ts). Recovery after a host loss takes the copy
 * with the highest epoch; a Register must therefore not raise the epoch before the copy it starts is
 * complete (the catch-up's Flush): a router that dies half-way through shipping its history to a new
 * server must not leave that half copy outranking the complete one on the old server.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SEGMENT_BYTES, VDiskLog } from '../dtl-client/store.js';
import { logger } from '../util/log.js';

const log = logger('test');

test('a Register counts (epoch) only once its copy is complete: a half-shipped copy never outranks a complete one', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-epoch-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dirA = path.join(root, 'a');
  const dirB = path.join(root, 'b');
  // server A: a complete copy (register, clear, ship, flush) at epoch 1
  const a = VDiskLog.create(dirA, 'r1', 1);
  a.clear();
  await a.flush();
  t.is(a.range().epoch, 1);
  // failover to server B at epoch 2; the router dies before the catch-up's flush
  const b = VDiskLog.create(dirB, 'r1', 2);
  b.clear();
  t.true(b.range().epoch < a.range().epoch, `the half copy on B (epoch ${b.range().epoch}) must not outrank A's complete one`);
  t.true(VDiskLog.load(dirB, log)!.range().epoch < 1, 'nor after a restart of server B');
  // a re-register on A itself (another router takes over), cut short before its flush: A keeps epoch 1
  a.register('r2', 3);
  a.clear();
  t.is(a.range().epoch, 1);
  t.is(VDiskLog.load(dirA, log)!.range().epoch, 1);
  await a.flush();
  t.is(a.range().epoch, 3, 'the flush that completes the copy commits the new epoch');
  t.is(a.range().router, 'r2');
  t.is(VDiskLog.load(dirA, log)!.range().epoch, 3);
});

test('a DTL flush covers a segment closed while its fdatasync is queued (no descriptor closed and reused under it)', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-seg-'));
  const orig = fs.fdatasync;
  t.teardown(() => {
    fs.fdatasync = orig;
    fs.rmSync(root, { recursive: true, force: true });
  });
  const synced: string[] = [];
  // every fdatasync waits a moment in "libuv's queue", then records the file it really syncs
  fs.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    setTimeout(() => {
      let file = `fd ${fd} (closed)`;
      try {
        file = fs.readlinkSync(`/proc/self/fd/${fd}`);
      } catch { /* closed */ }
      orig(fd, (err) => {
        if (err === null) synced.push(file);
        cb(err);
      });
    }, 20);
  }) as typeof fs.fdatasync;
  const dir = path.join(root, 'v');
  const l = VDiskLog.create(dir, 'r', 1);
  l.append(Buffer.alloc(SEGMENT_BYTES, 1), [5]); // fills segment 1
  const flushed = l.flush(); // its fdatasync is queued
  l.append(Buffer.alloc(100, 2), [6]); // rolls over to segment 2: segment 1's descriptor is closed
  await flushed.catch(() => undefined);
  const first = fs.readdirSync(dir).filter((n) => n.startsWith('seg-')).sort()[0];
  t.true(synced.includes(path.join(dir, first)), `the flush synced ${first} (synced: ${synced.join(', ')})`);
  l.close();
});
