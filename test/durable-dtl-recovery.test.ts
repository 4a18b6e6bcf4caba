/**
 * A crash between the rebuild's metadata commit and the end of the DTL recovery (after a host loss).
 * The next start must replay the DTL again, not take the half-recovered local state for a normal one:
 * a local restart never replays the DTL, and its catch-up would replace the server's copy with the local
 * history, losing the writes only the DTL held. The DTL here is a fake provider (volume/vdisk/dtl-hook.ts
 * DtlProvider) whose recovery hangs the first time (the crash) and replays one entry the second time.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemoryMetadataStore } from '../mds/memory-store.js';
import { openVPool } from '../volume/vpool.js';
import type { DtlProvider } from '../volume/vdisk/dtl-hook.js';
import type { VDiskImpl } from '../volume/vdisk/vdisk.js';
import { FaultyIo } from './helpers/faulty-io.js';
import { until } from './helpers/until.js';
import { FaultyMds } from './helpers/faulty-mds.js';
import { pattern } from './helpers/vpool.js';

const CS = 4096;

test('a crash during the DTL recovery after a host loss makes the next start recover again (the DTL-only writes come back)', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-dtlrec-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const backendUrl = `file://${path.join(root, 'backend')}`;
  const a = pattern(1, CS);
  const b = pattern(2, CS);
  // router A: cluster 0 reaches the backend; then the host is lost. The DTL holds cluster 5 (never uploaded).
  const poolA = await openVPool({ name: 'p', stateDir: path.join(root, 'a'), backendUrl, metadata: 'memory', scoClusters: 8, tlogScos: 2 });
  await poolA.createFile('/d', 0o644, 0, 0, 64 * CS);
  await poolA.vdisk('/d').write(0, a);
  await poolA.close();

  let calls = 0;
  const dtl = (replay: boolean): DtlProvider => ({
    defaultMode: 'none',
    sink: () => { throw new Error('no sink in this test'); },
    async recover(v: VDiskImpl) {
      calls++;
      if (!replay) return new Promise<void>(() => {}); // the router dies here
      await v.applyDtlEntry({ kind: 'cluster', address: 5, data: b });
      await v.syncToBackend();
    },
  });
  // router B, first start: rebuilt from the backend, then dies during the DTL recovery
  const store = new MemoryMetadataStore();
  t.teardown(() => store.close().catch(() => undefined));
  const stateB = path.join(root, 'b');
  const io1 = new FaultyIo();
  const mds1 = new FaultyMds(store, true);
  void openVPool({ name: 'p', stateDir: stateB, backendUrl, metadataStore: mds1, cacheIo: io1, dtl: dtl(false), scoClusters: 8, tlogScos: 2 });
  await until('the first start reaches the DTL recovery', () => calls === 1);
  io1.freeze();
  mds1.freeze();
  // router B, second start on what the first one left
  const poolB = await openVPool({ name: 'p', stateDir: stateB, backendUrl, metadataStore: new FaultyMds(store, true), cacheIo: new FaultyIo(), dtl: dtl(true), scoClusters: 8, tlogScos: 2 });
  t.is(calls, 2, 'the second start replays the DTL');
  const v = poolB.vdisk('/d');
  t.deepEqual(await v.read(0, CS), a, 'what was in the backend');
  t.deepEqual(await v.read(5 * CS, CS), b, 'the write only the DTL held');
  await poolB.close();
});
