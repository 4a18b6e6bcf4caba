/**
 * registry/ownership.ts and registry/router-registry.ts against a real etcd (no mounts): routers racing to take
 * one vPool — exactly one wins each round, owner tags only grow, a taker is refused while the owner's
 * registration lives and takes over once it is gone; vDisk records are written only by the current owner;
 * the owner tag in the backend claim (volume/claim/claim.ts): a lower tag never takes it, not even forced.
 * Random rounds (seed printed, VPOOLFS_SEED replays; VPOOLFS_OWNERSHIP_ROUNDS for more).
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openBlobStore } from '../volume/backend/index.js';
import { BackendClaim, ClaimRefused } from '../volume/claim/claim.js';
import { connectRegistry } from '../registry/connect.js';
import { RouterRegistry } from '../registry/router-registry.js';
import { recordVDisks, releaseVPool, takeVPool, vpoolOwner } from '../registry/ownership.js';
import { isSafe, takeoverKey, type Protection } from '../registry/keys.js';
import type { TakeoverRequest } from '../registry/takeover.js';
import { listRouters } from '../registry/router-list.js';
import { parseRegistryUrl } from '../registry/etcd-url.js';
import { isCode } from '../util/errors.js';
import { ConfigError, validateConfig } from '../tools/daemon/config.js';
import { startEtcd } from './helpers/etcd.js';
import { CLI, q, sh } from './helpers/mount.js';
import net from 'node:net';
import { seeded } from './helpers/seed.js';

test('etcd:// URLs', (t) => {
  t.deepEqual(parseRegistryUrl('etcd://127.0.0.1:2379'), ['http://127.0.0.1:2379']);
  t.deepEqual(parseRegistryUrl('etcd://a:1,b.example:2,[::1]:3'), ['http://a:1', 'http://b.example:2', 'http://[::1]:3']);
  for (const bad of ['http://a:1', 'etcd://a', 'etcd://a:0', 'etcd://a:1,', 'etcd://a:99999']) t.throws(() => parseRegistryUrl(bad), undefined, bad);
  // the config keys (tools/daemon/config.ts)
  t.deepEqual(validateConfig({ registry: 'etcd://h:1', failureDomain: 'rack1', registryLeaseSeconds: 2 }, 'f.json'), { registry: 'etcd://h:1', failureDomain: 'rack1', registryLeaseSeconds: 2 });
  t.throws(() => validateConfig({ registry: 'http://h:1' }, 'f.json'), { instanceOf: ConfigError, message: /registry: expected etcd:\/\/HOST:PORT/ });
  t.throws(() => validateConfig({ registryLeaseSeconds: 1 }, 'f.json'), { instanceOf: ConfigError, message: /registryLeaseSeconds: expected a lease in whole seconds, at least 2/ });
  t.throws(() => validateConfig({ registry: 'etcd://h' }, 'flags'), { instanceOf: ConfigError, message: /^--registry: "h" in "etcd:\/\/h" is not HOST:PORT/ });
});

test('racing takes: one owner at a time, tags only grow, refusals name the live owner, vDisk records only by the owner', async (t) => {
  const etcd = await startEtcd(t);
  const { seed } = seeded(t);
  let s = seed;
  const rnd = (n: number): number => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s % n;
  };
  const names = ['ra', 'rb', 'rc'];
  const regs = new Map<string, RouterRegistry>();
  const join = async (name: string) => {
    const r = await RouterRegistry.join({ registry: etcd.url, name, state: `/state/${name}`, leaseSeconds: 2, failureDomain: `fd-${name}` });
    regs.set(name, r);
    return r;
  };
  t.teardown(async () => {
    for (const r of regs.values()) await r.leave();
  });
  for (const n of names) await join(n);

  // a second registration of a live name from another state directory is refused
  const dup = await t.throwsAsync(RouterRegistry.join({ registry: etcd.url, name: 'ra', state: '/elsewhere', leaseSeconds: 2 }));
  t.regex(dup!.message, /a router named 'ra' is already registered: host \S+, pid \d+, state \/state\/ra/);

  const client = connectRegistry(etcd.url);
  t.teardown(() => client.close());
  let lastTag = 0;
  const rounds = Number(process.env.VPOOLFS_OWNERSHIP_ROUNDS ?? 8);
  for (let round = 0; round < rounds; round++) {
    // every registered router tries at once
    const results = await Promise.allSettled([...regs.keys()].map((n) => takeVPool(regs.get(n)!.client, 'pool', n)));
    const owner = await vpoolOwner(client, 'pool');
    t.truthy(owner, `round ${round}`);
    const won = results.filter((r) => r.status === 'fulfilled');
    t.is(won.length, 1, `round ${round}: exactly one taker wins (${JSON.stringify(results.map((r) => r.status))})`);
    for (const r of results) {
      if (r.status === 'rejected') {
        t.true(isCode(r.reason, 'BUSY'), String(r.reason));
        t.regex((r.reason as Error).message, new RegExp(`owned by router '${owner!.router}' .*which is alive`));
      }
    }
    t.true(owner!.tag > lastTag, `round ${round}: the tag grows (${owner!.tag} > ${lastTag})`);
    lastTag = owner!.tag;

    // only the owner records vDisks
    // each with a random protection record (the takeover rule: safe when clean, or sync DTL in ok_sync)
    const kinds: Array<Omit<Protection, 'since'>> = [
      { mode: 'none', state: 'ok_standalone', dirty: false }, { mode: 'none', state: 'ok_standalone', dirty: true },
      { mode: 'sync', state: 'ok_sync', dirty: true }, { mode: 'sync', state: 'degraded', dirty: true }, { mode: 'async', state: 'ok_sync', dirty: true },
    ];
    const ids = Array.from({ length: 1 + rnd(4) }, (_, i) => ({ id: `d${round}-${i}`, path: `/disk${i}`, dtl: { ...kinds[rnd(kinds.length)], since: new Date().toISOString() } }));
    for (const n of regs.keys()) t.is(await recordVDisks(regs.get(n)!.client, 'pool', n, owner!.tag, ids), n === owner!.router, n);
    t.false(await recordVDisks(client, 'pool', owner!.router, owner!.tag - 1, []), 'a stale tag writes nothing');
    const rows = await listRouters(client);
    t.deepEqual(rows.find((r) => r.name === owner!.router)!.vdisks.map((d) => d.id).sort(), ids.map((d) => d.id).sort());

    // the owner goes away: dies (its lease expires: polled) or stops cleanly (releases), then joins again
    const gone = regs.get(owner!.router)!;
    regs.delete(owner!.router);
    if (rnd(2) === 0) {
      gone.abandon();
      while ((await listRouters(client)).find((r) => r.name === owner!.router)?.state !== 'expired') await new Promise((r) => setTimeout(r, 100));
      const taker = [...regs.keys()][rnd(regs.size)];
      // a vDisk not recorded safe: refused, the risks named, until `vpoolfs takeover --force`'s request for that owner and tag
      const unsafe = ids.filter((d) => !isSafe(d.dtl)).map((d) => d.id);
      if (unsafe.length > 0) {
        const refused = await t.throwsAsync(takeVPool(regs.get(taker)!.client, 'pool', taker));
        t.true(isCode(refused, 'BUSY'));
        t.deepEqual(((refused as unknown as { context: { risks: Array<{ id: string }> } }).context.risks).map((r) => r.id).sort(), unsafe.sort());
        const stale: TakeoverRequest = { owner: owner!.router, tag: owner!.tag - 1, router: null, at: new Date().toISOString(), risks: [] };
        await client.put(takeoverKey('pool')).value(JSON.stringify(stale));
        await t.throwsAsync(takeVPool(regs.get(taker)!.client, 'pool', taker), undefined, 'a request for another tag lets nothing through');
        await client.put(takeoverKey('pool')).value(JSON.stringify({ ...stale, tag: owner!.tag }));
      }
      const took = await takeVPool(regs.get(taker)!.client, 'pool', taker);
      t.is(await client.get(takeoverKey('pool')).string(), null, 'the request is consumed');
      t.true(took.takeover, 'from an expired owner: a takeover');
      t.is(took.previous?.router, owner!.router);
      t.false(await recordVDisks(client, 'pool', owner!.router, owner!.tag, ids), 'the old owner records nothing more');
    } else {
      t.true(await releaseVPool(gone.client, 'pool', owner!.router, owner!.tag));
      await gone.leave();
      t.is(await vpoolOwner(client, 'pool'), null);
      t.deepEqual((await listRouters(client)).flatMap((r) => r.vdisks), [], 'released: no vDisk records');
    }
    await join(owner!.router);
  }
});

test('the backend claim records the owner tag: a lower tag is refused even with force, a higher one takes it', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-ownertag-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openBlobStore(`file://${dir}`);
  t.teardown(() => store.close());
  const newer = await BackendClaim.acquire(store, { router: 'rc', stateId: 'state-c', leaseMs: 60_000, ownerTag: 3 });
  t.teardown(() => newer.stop());
  t.is(newer.record.ownerTag, 3);
  const stale = await t.throwsAsync(BackendClaim.acquire(store, { router: 'rb', stateId: 'state-b', leaseMs: 60_000, ownerTag: 2, force: true }));
  t.true(stale instanceof ClaimRefused);
  t.regex(stale!.message, /held by router 'rc' .* with owner tag 3, newer than this router's 2: the registry gave the vPool to that router/);
  t.is(newer.fenced, null, 'the newer owner is not fenced');
  const next = await BackendClaim.acquire(store, { router: 'rd', stateId: 'state-d', leaseMs: 60_000, ownerTag: 4, force: true });
  t.teardown(() => next.stop());
  await newer.renew();
  t.regex(newer.fenced ?? '', /router 'rd' .* took the vPool over/);
  next.fenceNow('a test');
  t.is(next.fenced, 'a test');
  await t.throwsAsync(next.gate('put x'), { message: /refused, this router lost its claim on the vPool \(a test\)/ });
});

test('router list: which registry is asked for; an unreachable one is a clear error', async (t) => {
  const none = await sh(`env -u VPOOLFS_REGISTRY node ${q(CLI)} router list`);
  t.is(none.code, 1);
  t.regex(none.stderr, /^vpoolfs: router list: which registry\? Give --registry etcd:\/\/HOST:PORT/);
  const bad = await sh(`node ${q(CLI)} router list --registry http://127.0.0.1:1`);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /^vpoolfs: --registry: expected etcd:\/\/HOST:PORT/);
  // a port nobody listens on (taken from a closed listener)
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  const down = await sh(`node ${q(CLI)} router list --registry etcd://127.0.0.1:${port}`);
  t.is(down.code, 1);
  t.regex(down.stderr, new RegExp(`^vpoolfs: the registry etcd://127.0.0.1:${port} does not answer: .* \\(BACKEND\\)`));
});

test('the same router name from another state directory is another owner: a takeover with a new tag', async (t) => {
  const etcd = await startEtcd(t);
  const first = await RouterRegistry.join({ registry: etcd.url, name: 'ra', state: '/state/one', leaseSeconds: 2 });
  const one = await takeVPool(first.client, 'pool', 'ra', false, '/state/one');
  t.is((await takeVPool(first.client, 'pool', 'ra', false, '/state/one')).tag, one.tag, 'the same state directory keeps its tag');
  first.abandon();
  const client = connectRegistry(etcd.url);
  t.teardown(() => client.close());
  while ((await listRouters(client)).find((r) => r.name === 'ra')?.state !== 'expired') await new Promise((r) => setTimeout(r, 100));
  const second = await RouterRegistry.join({ registry: etcd.url, name: 'ra', state: '/state/two', leaseSeconds: 2 });
  t.teardown(() => second.leave());
  const two = await takeVPool(second.client, 'pool', 'ra', false, '/state/two');
  t.true(two.takeover);
  t.true(two.tag > one.tag);
  t.false(await recordVDisks(client, 'pool', 'ra', one.tag, []), 'the first one writes nothing more');
});
