/**
 * The vDisk records of a vPool with more vDisks than one etcd transaction may hold (etcd's default
 * `--max-txn-ops` is 128), against a real etcd (helpers/etcd.ts): an owner records 300 vDisks changed at once
 * (what every mount and takeover of such a vPool does) and every record is there; a takeover then sees the
 * dirty, unprotected ones as risks. Before recordVDisks split its writes, the one transaction was refused, the
 * owner recorded nothing, and a dead owner's vPool was taken over automatically with unshipped writes (found by
 * `npm run bench:scale-cluster`: no records after a takeover of 200 vDisks).
 */
import test from 'ava';
import { connectRegistry } from '../registry/connect.js';
import { vdisksPrefix, type Protection } from '../registry/keys.js';
import { recordVDisks, takeVPool, vpoolOwner } from '../registry/ownership.js';
import { takeoverRisks } from '../registry/takeover.js';
import { startEtcd } from './helpers/etcd.js';

test('an owner records 300 vDisks changed at once (several transactions), and a takeover sees each one at risk', async (t) => {
  const etcd = await startEtcd(t);
  const client = connectRegistry(etcd.url);
  t.teardown(() => client.close());
  const taken = await takeVPool(client, 'pool', 'ra', false, '/state/ra');
  const since = new Date().toISOString();
  const dtl = (dirty: boolean): Protection => ({ mode: 'none', state: 'ok_standalone', dirty, since });
  const vdisks = Array.from({ length: 300 }, (_, i) => ({ id: `id-${String(i).padStart(4, '0')}`, path: `/vd${i}`, dtl: dtl(i % 3 === 0) }));
  t.true(await recordVDisks(client, 'pool', 'ra', taken.tag, vdisks));
  const kvs = await client.getAll().prefix(vdisksPrefix('pool')).strings();
  t.is(Object.keys(kvs).length, 300);
  const owner = (await vpoolOwner(client, 'pool'))!;
  t.is((await takeoverRisks(client, 'pool', owner)).length, 100, 'every third vDisk is dirty with no DTL');

  // all 300 change again (every one dirty now), and 150 of them go: one change of 300 operations
  t.true(await recordVDisks(client, 'pool', 'ra', taken.tag, vdisks.slice(0, 150).map((d) => ({ ...d, dtl: dtl(true) }))));
  t.is(Object.keys(await client.getAll().prefix(vdisksPrefix('pool')).strings()).length, 150);
  t.is((await takeoverRisks(client, 'pool', owner)).length, 150);

  // another router that is not the owner records nothing
  t.false(await recordVDisks(client, 'pool', 'rb', taken.tag + 1, vdisks));
});
