/**
 * A clean close leaves nothing of its incarnation in the DTL: a router that recovered a lost host's vDisk
 * from the DTL and is stopped cleanly before its catch-up (Clear, history, Flush) finished must still empty
 * the server's copy — else a later recovery on another router replays those old entries over newer data
 * (seen as a wrong size in dtl-hostloss-volume).
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DtlClient } from '../dtl-client/client.js';
import { dtlProvider } from '../dtl-client/provider.js';
import { openVPool } from '../volume/vpool.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { pattern } from './helpers/vpool.js';

test('a router stopped cleanly right after recovering from the DTL leaves the DTL empty; the data is in the backend', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-retire-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const backendUrl = `file://${path.join(root, 'backend')}`;
  const srv = await startDtlServer(t, path.join(root, 'dtl'));
  const provider = (router: string) => dtlProvider({ servers: [srv.address], defaultMode: 'sync', router, retryMs: 200 });
  // 4 MiB SCOs: A's 256 KiB stay in its open SCO, so nothing of A's reaches the backend after the host is lost
  const opts = (router: string) => ({ name: 'rt', backendUrl, routerId: router, scoClusters: 1024, tlogScos: 2, scoMaxAgeMs: 3_600_000, dtl: provider(router) });

  // router A: the vDisk and its tree reach the backend, then writes that only the write cache and the DTL hold
  const a = await openVPool({ ...opts('a'), stateDir: path.join(root, 'state-a') });
  await a.createFile('/d', 0o644, 0, 0, 0);
  await a.syncToBackend();
  const v = a.vdisk('/d');
  const id = v.info().id;
  while (v.info().dtl.state !== 'ok_sync') await new Promise((r) => setTimeout(r, 10));
  const data = pattern(41, 256 * 1024);
  await v.write(0, data);
  const probe = new DtlClient({ servers: [srv.address] });
  t.teardown(() => probe.close());
  t.true((await probe.getScoRange(id)).entries > 0, 'the DTL holds the writes not in the backend');

  // router A's host is lost: its vDisk stops for good (the pool object stays, idle, in this process)
  (v as unknown as { shutdown(): void }).shutdown();
  // router C recovers, then stops at once (A's claim is still live: taken with force, docs/cluster.md)
  const c = await openVPool({ ...opts('c'), stateDir: path.join(root, 'state-c'), force: true });
  t.true((await c.vdisk('/d').read(0, data.length)).equals(data), 'recovered from the DTL');
  await c.close();
  t.is((await probe.getScoRange(id)).entries, 0, 'nothing of either incarnation is left in the DTL');

  // and a third router, from the backend alone, has every byte
  const d = await openVPool({ ...opts('d'), stateDir: path.join(root, 'state-d') });
  t.true((await d.vdisk('/d').read(0, data.length)).equals(data));
  await d.close();
});
