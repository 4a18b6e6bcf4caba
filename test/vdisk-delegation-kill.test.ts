/**
 * Ownership per vDisk: kill -9 of the router a vDisk was delegated to, with a sync DTL (docs/cluster.md,
 * "Ownership per vDisk"). The delegate is a process of its own (helpers/delegate-child.ts), registered in a real
 * etcd, with a real DTL server (helpers/dtl-server.ts); its last writes are not shipped (only the DTL has them:
 * with the owner opened without the DTL this test fails — the last acknowledged write of a cluster is missing).
 * Once killed and its lease expired, the vPool's owner takes the vDisk back by itself — the delegate recorded it
 * safe (sync DTL in sync) — and its rebuild plus the DTL recovery give back every write the delegate acknowledged.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { startEtcd } from './helpers/etcd.js';
import { until } from './helpers/until.js';
import { poolEnv } from './helpers/vpool.js';
import { DtlServerProcess } from './helpers/dtl-server.js';
import { pattern } from './helpers/ref-disk.js';
import { seeded } from './helpers/seed.js';
import { RouterRegistry } from '../registry/router-registry.js';
import { takeVPool } from '../registry/ownership.js';
import { delegateVDisk, delegationTarget, returnVDisk } from '../registry/vdisk-delegation.js';
import { routerKey, vdiskKey } from '../registry/keys.js';
import { dtlProvider } from '../dtl-client/provider.js';
import { openBlobStore } from '../volume/backend/index.js';
import { vdiskFences } from '../volume/datapath/formats/epoch-fence.js';
import { listedTlogs } from '../volume/datapath/formats/backend-layout.js';

const CHILD = fileURLToPath(new URL('./helpers/delegate-child.js', import.meta.url));
const CS = 4096;
const SIZE = 1 << 20;
/** Writes of the delegate, all acknowledged before the kill; over 128, some clusters are written twice. */
const WRITES = 200;

test('kill -9 of a delegate writing with a sync DTL: the vPool\'s owner takes the vDisk back by itself, every acknowledged write is there', async (t) => {
  const { seed } = seeded(t);
  const etcd = await startEtcd(t);
  const env = poolEnv(t);
  const dtl = await new DtlServerProcess(path.join(env.root, 'dtl')).start();
  t.teardown(() => dtl.stop());
  const ra = await RouterRegistry.join({ registry: etcd.url, name: 'ra', state: path.join(env.root, 'ra'), leaseSeconds: 2, vpool: 'pool', role: 'owner' });
  t.teardown(() => ra.leave().catch(() => undefined));
  const a = await env.open({ name: 'pool', routerId: 'ra', scoClusters: 16, tlogScos: 2, dtl: dtlProvider({ servers: [dtl.address], defaultMode: 'sync', router: 'ra', retryMs: 200 }) });
  const owner = { router: 'ra', tag: (await takeVPool(ra.client, 'pool', 'ra')).tag };
  await a.createFile('/d', 0o644, 0, 0, SIZE);
  // what A wrote before the handover: the second half (the delegate writes from cluster 0 up)
  const before = pattern(seed ^ 0x5a5a, SIZE / 2, SIZE / 2);
  await a.vdisk('/d').write(SIZE / 2, before);

  const child = spawn(process.execPath, [CHILD, etcd.url, env.backendUrl, path.join(env.root, 'rb'), a.vdisk('/d').id, dtl.address, String(seed), String(WRITES)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const acks = (): number => [...out.matchAll(/^ack (\d+)$/gm)].length;
  await until('the delegate registered', () => /^lease /m.test(out) || child.exitCode !== null, 30_000);
  if (child.exitCode !== null) t.fail(`the delegate exited: ${err}`);
  const target = await delegationTarget(ra.client, 'pool', 'ra', 'rb');
  const { id } = await a.handOverVDisk!('/d', 'rb');
  const tag = await delegateVDisk(ra.client, 'pool', id, '/d', owner, target);
  t.truthy(tag);
  child.stdin.write(`${tag}\n`);
  await until(`the delegate acknowledged ${WRITES} writes`, () => acks() >= WRITES || child.exitCode !== null, 60_000);
  if (child.exitCode !== null) t.fail(`the delegate exited: ${err.slice(-2000)}`);
  child.kill('SIGKILL');
  await exited;
  const acked = acks();
  t.log(`killed the delegate after ${acked} acknowledged writes`);

  // its lease expires; the owner takes the vDisk back by itself (recorded safe: sync DTL in sync)
  await until('the delegate\'s registration expired', async () => (await ra.client.get(routerKey('rb')).string()) === null, 30_000);
  const back = await returnVDisk(ra.client, 'pool', id, owner, { router: 'rb', tag: tag! }, { fromDead: true });
  t.truthy(back, 'taken back without force');
  await a.takeBackVDisk!(id, back!);
  t.like(JSON.parse((await ra.client.get(vdiskKey('pool', id)).string())!), { router: 'ra', tag: back });
  const store = await openBlobStore(env.backendUrl);
  t.teardown(() => store.close());
  const fence = (await vdiskFences(store, id)).find((f) => f.tag === tag)!;
  t.truthy(fence, 'the delegate wrote its owner-tag fence');
  t.log(`TLogs the delegate shipped before the kill: ${(await listedTlogs(store, id)).filter((n) => n >= fence.firstTlog).length} (its last writes were only in the write cache and the DTL)`);
  const got = await a.vdisk('/d').read(0, SIZE);
  // write n went to cluster n % 128; the last acknowledged write of each cluster must be there (or the one after
  // the last acknowledged write, which may have reached the DTL before the kill)
  const last = acked - 1;
  for (let c = 0; c < 128; c++) {
    const n = last - ((last - c) % 128 + 128) % 128;
    const found = got.subarray(c * CS, (c + 1) * CS);
    const ok = found.equals(pattern(seed, n, CS)) || ((last + 1) % 128 === c && found.equals(pattern(seed, last + 1, CS)));
    if (!ok) return t.fail(`cluster ${c}: its last acknowledged write (${n}) is not there`);
  }
  t.true(got.subarray(SIZE / 2).equals(before), 'what the owner wrote before the handover is there');
  await env.close(a);
});
