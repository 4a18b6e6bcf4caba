/**
 * What one change of a vPool's vDisks costs etcd, at two sizes of the vPool, against a real etcd
 * (helpers/etcd.ts): an owner's RouterSession records N vDisks, then one vDisk more is created and recorded;
 * etcd's own counters (/metrics: bytes it sent to clients, the keys its range requests returned) say what that
 * one change cost. It must not grow with the vPool: before the session kept what it had recorded, every change
 * read every record of the vPool (a `getAll` of the prefix), so a change at 2,000 vDisks cost etcd about 20
 * times one at 100 — with a 2 s lease, an owner creating its ~6,000th vDisk lost its lease. Counts, not time.
 * The records stay what they promise: every vDisk's record there, a removed one's gone, the since kept.
 */
import test from 'ava';
import { RouterSession } from '../registry/router-session.js';
import { vdisksPrefix, type OwnerRecord } from '../registry/keys.js';
import type { Listed } from '../registry/vpool-walk.js';
import { startEtcd, type EtcdHandle } from './helpers/etcd.js';

/** etcd's counters that grow with what a client reads. */
async function etcdCounters(etcd: EtcdHandle): Promise<{ sentBytes: number; rangeKeys: number }> {
  const text = await (await fetch(`http://${etcd.host}:${etcd.clientPort}/metrics`)).text();
  const sum = (name: string): number => text.split('\n').filter((l) => l.startsWith(name)).reduce((s, l) => s + Number(l.split(' ').pop()), 0);
  return { sentBytes: sum('etcd_network_client_grpc_sent_bytes_total'), rangeKeys: sum('etcd_mvcc_range_total') };
}

const listed = (i: number): Listed => ({ id: `id-${String(i).padStart(6, '0')}`, path: `/vd${i}`, dtl: { mode: 'sync', state: 'ok_sync', dirty: false } });

/** Bytes etcd sends for one vDisk created in a vPool of `n` vDisks (the owner's session records it). */
async function costOfOneCreate(t: import('ava').ExecutionContext, etcd: EtcdHandle, vpool: string, n: number): Promise<{ sentBytes: number; rangeKeys: number }> {
  const list = Array.from({ length: n }, (_, i) => listed(i));
  const s = await RouterSession.start({ registry: etcd.url, name: `r-${vpool}`, state: `/state/${vpool}`, vpool, leaseSeconds: 10 });
  t.teardown(() => s.stop());
  await s.attach(() => list);
  // the periodic check (a third of the lease) and the local watch may run too: settle, then measure one change
  await s.refresh();
  const before = await etcdCounters(etcd);
  list.push(listed(n));
  await s.refresh();
  const after = await etcdCounters(etcd);
  const kvs = await s.registry.client.getAll().prefix(vdisksPrefix(vpool)).strings();
  t.is(Object.keys(kvs).length, n + 1, `every vDisk of ${vpool} has its record`);
  const rec = JSON.parse(kvs[`${vdisksPrefix(vpool)}${listed(n).id}`]!) as OwnerRecord;
  t.is(rec.router, `r-${vpool}`);
  t.is(rec.tag, s.tag);
  t.is(rec.dtl?.state, 'ok_sync');
  // a removed vDisk loses its record; the others keep theirs (and their since)
  const first = JSON.parse(kvs[`${vdisksPrefix(vpool)}${listed(0).id}`]!) as OwnerRecord;
  list.splice(1, 1);
  await s.refresh();
  const kvs2 = await s.registry.client.getAll().prefix(vdisksPrefix(vpool)).strings();
  t.is(Object.keys(kvs2).length, n);
  t.false(`${vdisksPrefix(vpool)}${listed(1).id}` in kvs2);
  t.is((JSON.parse(kvs2[`${vdisksPrefix(vpool)}${listed(0).id}`]!) as OwnerRecord).since, first.since);
  return { sentBytes: after.sentBytes - before.sentBytes, rangeKeys: after.rangeKeys - before.rangeKeys };
}

test('recording one new vDisk costs etcd the same at 100 and at 2,000 vDisks', async (t) => {
  const etcd = await startEtcd(t);
  const small = await costOfOneCreate(t, etcd, 'small', 100);
  const large = await costOfOneCreate(t, etcd, 'large', 2000);
  t.log(`one create recorded: etcd sent ${small.sentBytes} bytes at 100 vDisks, ${large.sentBytes} bytes at 2,000 (range requests: ${small.rangeKeys}, ${large.rangeKeys})`);
  // the old code read all 2,000 records (~200 KB) for the one change; the owner's keepalives and the other
  // session's checks may add a few hundred bytes to either figure, never a factor
  t.true(large.sentBytes < 2 * small.sentBytes + 4096, `etcd sent ${large.sentBytes} bytes at 2,000 vDisks vs ${small.sentBytes} at 100: the cost of a change grows with the vPool`);
});
