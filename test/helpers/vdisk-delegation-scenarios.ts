/**
 * The scenarios of test/vdisk-delegation.test.ts (file://) and test/vdisk-delegation-s3.test.ts (radosgw).
 * Ownership per vDisk, the volume and registry halves (docs/cluster.md, "Ownership per vDisk"), with a real etcd
 * (test/helpers/etcd.ts) and real registrations: the vPool's owner A hands one vDisk to router B — shipped whole
 * and closed on A, the handover in one etcd transaction (a new owner tag) — B serves it from its own state
 * directory without the vPool's claim, its backend writes gated by the registry's confirmation and its rebuild
 * fenced by the owner tag; A keeps serving the vPool's other vDisk meanwhile; then it comes back.
 * The zombie: B's uploads already past its gate (held in flight) when B's lease expires and A takes the vDisk
 * back and writes; released, they change nothing a rebuild from the backend serves (the test fails without the
 * owner-tag fence), and B's own I/O on it answers FENCED.
 * Seeded random writes against a reference (VPOOLFS_SEED replays a run).
 */
import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { startEtcd } from './etcd.js';
import { until } from './until.js';
import { poolEnv } from './vpool.js';
import { GatedStore } from './gated-store.js';
import { RefDisk } from './ref-disk.js';
import { seeded } from './seed.js';
import { RouterRegistry } from '../../registry/router-registry.js';
import { recordVDisks, takeVPool } from '../../registry/ownership.js';
import { vdisksOf } from '../../registry/vpool-walk.js';
import { confirmVDiskOwner, delegateVDisk, delegatedVDisks, delegationTarget, recordDelegatedVDisk, returnVDisk } from '../../registry/vdisk-delegation.js';
import { vdiskKey } from '../../registry/keys.js';
import { listRouters } from '../../registry/router-list.js';
import { connectRegistry } from '../../registry/connect.js';
import { openBlobStore } from '../../volume/backend/index.js';
import type { BlobStore } from '../../volume/backend/types.js';
import { VDiskGate } from '../../volume/claim/vdisk-gate.js';
import { DelegatedVDisk } from '../../volume/vpool-delegate.js';
import { tlogCounts, vdiskFences } from '../../volume/datapath/formats/epoch-fence.js';
import { listedTlogs } from '../../volume/datapath/formats/backend-layout.js';
import type { VDisk, VPool } from '../../volume/types.js';
import { isCode } from '../../util/errors.js';

const SIZE = 1 << 20;
const CS = 4096;
const LEASE_S = 2;

/** `n` seeded writes of 1–4 clusters into clusters [from, to) of `v`, mirrored in `ref`. */
async function writes(v: VDisk, ref: RefDisk, next: () => number, n: number, from = 0, to = SIZE / CS): Promise<void> {
  for (let i = 0; i < n; i++) {
    const len = 1 + Math.floor(next() * 4);
    const at = from + Math.floor(next() * (to - from - len));
    const data = Buffer.alloc(len * CS);
    for (let j = 0; j < data.length; j += 4) data.writeUInt32LE((next() * 2 ** 32) >>> 0, j);
    await v.write(at * CS, data);
    ref.write(at * CS, data);
  }
}

function same(t: ExecutionContext, got: Buffer, ref: RefDisk, what: string): void {
  const want = Buffer.concat([ref.read(0, SIZE), Buffer.alloc(Math.max(0, SIZE - ref.size))]);
  if (got.equals(want)) {
    t.pass();
    return;
  }
  let at = 0;
  while (got[at] === want[at]) at++;
  t.fail(`${what}: differs from the reference first at byte ${at} (cluster ${Math.floor(at / CS)})`);
}

async function setup(t: ExecutionContext, backendUrl?: string) {
  const { rand: next } = seeded(t);
  const etcd = await startEtcd(t);
  const env = poolEnv(t, { scoClusters: 16, tlogScos: 2, ...(backendUrl === undefined ? {} : { backendUrl }) });
  const join = async (name: string, role: 'owner' | 'follower') => {
    const reg = await RouterRegistry.join({ registry: etcd.url, name, state: path.join(env.root, name), leaseSeconds: LEASE_S, vpool: 'pool', role });
    t.teardown(() => reg.leave().catch(() => undefined));
    return reg;
  };
  const ra = await join('ra', 'owner');
  const rb = await join('rb', 'follower');
  const a = await env.open({ name: 'pool', routerId: 'ra' });
  const owner = { router: 'ra', tag: (await takeVPool(ra.client, 'pool', 'ra')).tag };
  const refs = { d: new RefDisk(), e: new RefDisk() };
  for (const [name, ref] of Object.entries(refs)) {
    await a.createFile(`/${name}`, 0o644, 0, 0, SIZE);
    ref.resize(SIZE);
    await writes(a.vdisk(`/${name}`), ref, next, 24);
  }
  // the records the owner's session keeps (registry/router-session.ts)
  const record = () => recordVDisks(ra.client, 'pool', 'ra', owner.tag, vdisksOf(a).map((d) => ({ ...d, dtl: { ...d.dtl, since: new Date().toISOString() } })));
  t.true(await record());
  const raw = await openBlobStore(backendUrl ?? env.backendUrl);
  t.teardown(() => raw.close());
  return { etcd, env, next, ra, rb, a, owner, refs, raw, record };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** A hands /d to B (the owner's steps), B opens it over `backend`. */
async function delegate(t: ExecutionContext, s: Setup, backend: BlobStore) {
  const target = await delegationTarget(s.ra.client, 'pool', 'ra', 'rb');
  const { id } = await s.a.handOverVDisk!('/d', 'rb');
  const tag = await delegateVDisk(s.ra.client, 'pool', id, '/d', s.owner, target);
  if (tag === null) throw new Error('the handover transaction did not hold');
  t.true(tag > s.owner.tag);
  const lease = s.rb.record.lease;
  // a client of its own: the zombie test abandons B's registration (its keepalive stops, as in a pause) and B's
  // gate must still hear etcd's answer, as a resumed process does
  const client = connectRegistry(s.etcd.url);
  t.teardown(() => client.close());
  const gate = new VDiskGate(id, 'rb', tag, () => confirmVDiskOwner(client, 'pool', id, { router: 'rb', tag }, lease), LEASE_S * 1000);
  await gate.start();
  const b = await DelegatedVDisk.open({ vpool: 'pool', id, stateDir: path.join(s.env.root, 'rb-delegated', id), backend, gate, routerId: 'rb', scoClusters: 16, tlogScos: 2, scoMaxAgeMs: 3_600_000 });
  t.teardown(() => b.close().catch(() => undefined));
  return { id, tag, gate, b };
}

async function readAll(v: VDisk): Promise<Buffer> {
  return v.read(0, SIZE);
}

/** Opens the vPool on a fresh state directory (a third router rebuilding everything from the backend) and checks both vDisks. */
async function rebuiltElsewhere(t: ExecutionContext, s: Setup, what: string): Promise<void> {
  await s.env.close(s.a);
  const c: VPool = await s.env.open({ name: 'pool', routerId: 'rc', stateDir: path.join(s.env.root, 'rc-state') });
  same(t, await readAll(c.vdisk('/d')), s.refs.d, `${what}: /d rebuilt from the backend on a third router`);
  same(t, await readAll(c.vdisk('/e')), s.refs.e, `${what}: /e rebuilt from the backend on a third router`);
  await s.env.close(c);
}

/** A hands /d to B and back while A keeps /e: every byte, the records, the fences, the refusals. */
export async function handoverAndBack(t: ExecutionContext, backendUrl?: string): Promise<void> {
  const s = await setup(t, backendUrl);
  // refused before anything is touched
  await t.throwsAsync(delegationTarget(s.ra.client, 'pool', 'ra', 'ra'), { message: /owns vPool 'pool'/ });
  await t.throwsAsync(delegationTarget(s.ra.client, 'pool', 'ra', 'rz'), { message: /router 'rz' is not alive/ });

  const { id, tag, gate, b } = await delegate(t, s, s.raw);
  // A: closed there, BUSY naming B; its stat still answers; no unlink or rename while delegated
  t.is(s.a.delegatedVDisks!().get(id), 'rb');
  t.throws(() => s.a.vdisk('/d'), { message: /served by router 'rb'/ });
  t.is(s.a.stat('/d').size, SIZE);
  await t.throwsAsync(s.a.unlink('/d'), { message: /served by router 'rb'/ });
  await t.throwsAsync(s.a.rename('/d', '/d2'), { message: /served by router 'rb'/ });
  // the record names B, with the new tag; a second delegation does not hold
  const rec = (await delegatedVDisks(s.ra.client, 'pool')).get(id);
  t.like(rec, { router: 'rb', tag, delegatedBy: 'ra', path: '/d' });
  t.is(await delegateVDisk(s.ra.client, 'pool', id, '/d', s.owner, await delegationTarget(s.ra.client, 'pool', 'ra', 'rb')), null);
  // the owner's session records its vDisks again: the delegated record stays
  t.true(await s.record());
  // router list: /d under rb (delegated by ra), /e under ra
  const rows = await listRouters(s.ra.client);
  t.deepEqual(rows.find((r) => r.name === 'rb')?.vdisks.map((d) => [d.path, d.tag, d.delegatedBy]), [['/d', tag, 'ra']]);
  t.deepEqual(rows.find((r) => r.name === 'ra')?.vdisks.map((d) => d.path), ['/e']);
  // B serves every byte A wrote, and its own fence is in the backend
  same(t, await readAll(b.vdisk), s.refs.d, 'B after the handover');
  t.is(b.vdisk.info().router, 'rb');
  t.true((await vdiskFences(s.raw, id)).some((f) => f.tag === tag && f.router === 'rb'));
  // two vDisks of one vPool written at once by two routers, each locally
  await Promise.all([writes(b.vdisk, s.refs.d, s.next, 40), writes(s.a.vdisk('/e'), s.refs.e, s.next, 40)]);
  await b.vdisk.syncToBackend();
  t.is(gate.fenced, null);

  // back: B hands it back (closed, shipped), the return transaction, A rebuilds it from the backend under a new tag
  await b.close();
  t.is(await returnVDisk(s.ra.client, 'pool', id, s.owner, { router: 'rb', tag: tag + 1 }), null, 'a return naming another tag does not hold');
  const back = await returnVDisk(s.ra.client, 'pool', id, s.owner, { router: 'rb', tag });
  t.truthy(back);
  await s.a.takeBackVDisk!(id, back!);
  t.is(s.a.delegatedVDisks!().size, 0);
  t.like(JSON.parse((await s.ra.client.get(vdiskKey('pool', id)).string())!), { router: 'ra', tag: back });
  same(t, await readAll(s.a.vdisk('/d')), s.refs.d, 'A after taking it back');
  t.true((await vdiskFences(s.raw, id)).some((f) => f.tag === back && f.router === 'ra'));
  await writes(s.a.vdisk('/d'), s.refs.d, s.next, 16);
  await s.a.rename('/d', '/d2');
  await s.a.rename('/d2', '/d');
  await rebuiltElsewhere(t, s, 'after a delegation and its return');
}

/** The zombie: B's TLog PUT in flight lands after A took /d back and wrote; it changes nothing; B answers FENCED. */
export async function zombie(t: ExecutionContext, backendUrl?: string): Promise<void> {
  const s = await setup(t, backendUrl);
  // B's TLog puts can be held on their way (its SCOs go through: a vDisk uploads a TLog after its SCOs, so the
  // PUT in flight when a router stops is a TLog whose SCOs are in the backend)
  const held = new GatedStore(s.raw);
  const store: BlobStore = new Proxy(s.raw, {
    get(target, prop) {
      if (prop === 'put') return (key: string, data: Uint8Array) => (key.includes('/tlog/') ? held.put(key, data) : target.put(key, data));
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const { id, tag, gate, b } = await delegate(t, s, store);
  const first = SIZE / CS / 2; // B's late writes go to the first half, A's after the takeback to the second
  await writes(b.vdisk, s.refs.d, s.next, 30);
  await b.vdisk.syncToBackend();
  // B writes more; its uploads pass the gate (the lease is alive), its TLog is held on its way (a PUT in flight)
  held.pause();
  t.log('B: uploads held from now on');
  const lost = new RefDisk(); // B's writes whose TLog is held: never in what A serves
  await writes(b.vdisk, lost, s.next, 30, 0, first);
  b.vdisk.ship();
  await until('B\'s uploads held in flight', () => held.waiting > 0, 30_000);
  // B records its vDisk unprotected (no DTL, unshipped): a dead B's vDisk is not taken back by itself
  t.true(await recordDelegatedVDisk(s.rb.client, 'pool', id, { router: 'rb', tag }, { mode: 'none', state: 'ok_standalone', dirty: true }));
  await t.throwsAsync(returnVDisk(s.ra.client, 'pool', id, s.owner, { router: 'rb', tag }, { fromDead: true }), { message: /not taken back automatically from dead router 'rb'/ });
  // B stops renewing (paused, cut off): once its lease is gone its gate fences it, and A takes the vDisk back
  s.rb.abandon();
  t.log('B: registration abandoned (its keepalive stops)');
  await until('B\'s registration expired', async () => (await s.ra.client.get('/vpoolfs/routers/rb').string()) === null, 30_000);
  await until('B fenced by its gate', () => gate.fenced !== null, 30_000);
  t.regex(gate.fenced!, /lease .* expired|owns it now/);
  const back = await returnVDisk(s.ra.client, 'pool', id, s.owner, { router: 'rb', tag }, { fromDead: true, force: true });
  t.truthy(back);
  await s.a.takeBackVDisk!(id, back!);
  same(t, await readAll(s.a.vdisk('/d')), s.refs.d, 'A after taking it back (B\'s held writes are not in the backend)');
  await writes(s.a.vdisk('/d'), s.refs.d, s.next, 30, first, SIZE / CS);
  await s.a.vdisk('/d').syncToBackend();
  // the zombie's uploads land now
  const before = new Set(await listedTlogs(s.raw, id));
  const landed = held.puts;
  held.resume();
  await until('B\'s held uploads landed', () => held.waiting === 0 && held.puts > landed, 30_000);
  const fences = await vdiskFences(s.raw, id);
  const late = (await listedTlogs(s.raw, id)).filter((n) => !before.has(n));
  t.log(`TLogs uploaded by B after A's takeback: ${late.join(', ')} (${held.puts - landed} puts)`);
  t.true(late.length > 0, 'the zombie\'s late TLogs are new keys, not A\'s (the owner-tag fence numbers A past them)');
  t.deepEqual(late.filter((n) => tlogCounts(fences, n)), [], 'every late TLog lies outside the chain (the owner-tag fence)');
  // B answers FENCED; nothing it does reaches the backend
  const err = await t.throwsAsync(b.vdisk.write(0, Buffer.alloc(CS, 7)));
  t.true(isCode(err, 'FENCED'), `B's write: ${err?.message}`);
  same(t, await readAll(s.a.vdisk('/d')), s.refs.d, 'A after the zombie\'s late uploads');
  await rebuiltElsewhere(t, s, 'after the zombie\'s late uploads');
}

/** The gate with etcd down, and a return while B lives. */
export async function gateOutage(t: ExecutionContext, backendUrl?: string): Promise<void> {
  const s = await setup(t, backendUrl);
  const { id, tag, gate, b } = await delegate(t, s, s.raw);
  await writes(b.vdisk, s.refs.d, s.next, 8);
  await b.vdisk.syncToBackend();
  // etcd stops: once the last confirmation is older than half the TTL, a backend write is held back (BACKEND),
  // not let through, and the gate is not fenced (nobody could have taken the vDisk: nothing changes without etcd)
  await s.etcd.stop();
  await new Promise((r) => setTimeout(r, LEASE_S * 1000));
  const held = await t.throwsAsync(gate.gate('put a test key'));
  t.true(isCode(held, 'BACKEND'), held?.message);
  t.is(gate.fenced, null);
  await s.etcd.start();
  // back: B's registration and the record are unchanged if its lease survived, and the writes go on — or the
  // lease was lost meanwhile (etcd away for longer than it): then the gate fences (the owner may take it back)
  await until('the gate confirmed again or fenced', async () => {
    try {
      await gate.gate('put a test key');
      return true;
    } catch (err) {
      return isCode(err, 'FENCED');
    }
  }, 30_000);
  t.log(gate.fenced === null ? 'B\'s lease survived the outage: the gate lets writes through again' : `B's lease was lost in the outage: ${gate.fenced}`);
  if (gate.fenced !== null) {
    t.regex(gate.fenced, /lease .* expired/);
    return;
  }
  await writes(b.vdisk, s.refs.d, s.next, 8);
  await b.vdisk.syncToBackend();
  // the owner records the vDisk back while B is alive (a move back whose hand-back B did not do): B's next
  // confirmation sees the record changed and fences it; nothing it writes from then on reaches the backend
  const back = await returnVDisk(s.ra.client, 'pool', id, s.owner, { router: 'rb', tag });
  t.truthy(back);
  await gate.confirm();
  t.regex(gate.fenced ?? '', /router 'ra' owns it now/);
  const err = await t.throwsAsync(gate.gate('put a test key'));
  t.true(isCode(err, 'FENCED'), err?.message);
  // the owner takes it back from the backend: every write B shipped while it owned it is there
  await s.a.takeBackVDisk!(id, back!);
  same(t, await readAll(s.a.vdisk('/d')), s.refs.d, 'A after taking back from a fenced B');
}
