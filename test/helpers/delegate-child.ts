/**
 * The delegate of test/vdisk-delegation-kill.test.ts, a process of its own so that the test can kill -9 it: it
 * registers as router `rb` (follower of vPool `pool`) and prints `lease ID`; reads the owner tag of the
 * delegation from stdin; opens the delegated vDisk (volume/vpool-delegate.ts) with its gate and a sync DTL on
 * DTL_ADDR, nothing shipped by age (every write stays unshipped: only the DTL protects it); once the DTL is in
 * sync it records the vDisk's protection in etcd and prints `recorded`; then writes n = 0, 1, … (4 KiB of pattern(SEED, n)
 * into cluster n % 128), printing `ack n` after each write resolved, n < COUNT, then idles until killed. 4 MiB SCOs
 * and no shipping by age: what is unshipped at the kill is only in its write cache and the DTL.
 * Usage: node delegate-child.js ETCD_URL BACKEND_URL STATE VDISK_ID DTL_ADDR SEED COUNT
 */
import { createInterface } from 'node:readline';
import path from 'node:path';
import { RouterRegistry } from '../../registry/router-registry.js';
import { connectRegistry } from '../../registry/connect.js';
import { confirmVDiskOwner, recordDelegatedVDisk } from '../../registry/vdisk-delegation.js';
import { openBlobStore } from '../../volume/backend/index.js';
import { VDiskGate } from '../../volume/claim/vdisk-gate.js';
import { DelegatedVDisk } from '../../volume/vpool-delegate.js';
import { dtlProvider } from '../../dtl-client/provider.js';
import { pattern } from './ref-disk.js';

const [etcdUrl, backendUrl, state, id, dtlAddr, seedArg, countArg] = process.argv.slice(2);
const count = Number(countArg);
const reg = await RouterRegistry.join({ registry: etcdUrl, name: 'rb', state, leaseSeconds: 2, vpool: 'pool', role: 'follower' });
const lease = reg.record.lease;
process.stdout.write(`lease ${lease}\n`);
const lines = createInterface({ input: process.stdin });
const tag = Number(await new Promise<string>((resolve) => lines.once('line', resolve)));
const client = connectRegistry(etcdUrl);
const me = { router: 'rb', tag };
const gate = new VDiskGate(id, 'rb', tag, () => confirmVDiskOwner(client, 'pool', id, me, lease), 2000);
await gate.start();
const b = await DelegatedVDisk.open({
  vpool: 'pool', id, stateDir: path.join(state, id), backend: await openBlobStore(backendUrl), gate, routerId: 'rb',
  dtl: dtlProvider({ servers: [dtlAddr], defaultMode: 'sync', router: 'rb', retryMs: 200 }), scoClusters: 1024, tlogScos: 16, scoMaxAgeMs: 3_600_000,
});
while (b.vdisk.info().dtl.state !== 'ok_sync') await new Promise((r) => setTimeout(r, 50));
if (!await recordDelegatedVDisk(client, 'pool', id, me, { mode: 'sync', state: 'ok_sync', dirty: true })) throw new Error('recording the protection failed');
process.stdout.write('recorded\n');
const seed = Number(seedArg);
// write n goes to cluster n % 128: the first half of the vDisk (the owner wrote the second half before the
// handover); COUNT writes, then it idles until killed (the parent cannot kill it at a chosen write: this way
// the writes acknowledged are exactly known)
for (let n = 0; n < count; n++) {
  await b.vdisk.write((n % 128) * 4096, pattern(seed, n, 4096));
  process.stdout.write(`ack ${n}\n`);
}
setInterval(() => undefined, 60_000);
