/**
 * The rankings of registry/placement.ts on registrations made up here (no etcd): which follower takes a dead
 * owner's vPool over, how DTL servers are placed and ordered, which machine a registration runs on. Beside the
 * real tests (takeover-placement, dtl-placement, takeover-dtl-skip), a seeded model: random clusters, every
 * ranking checked against a plain reference (a brute-force "best" by the rules' order). VPOOLFS_SEED replays.
 */
import test from 'ava';
import type { RouterRecord } from '../registry/keys.js';
import { hostOf, placeServers, rankDtlServers, rankTakers, sameMachine, type TakerRank } from '../registry/placement.js';
import { seeded } from './helpers/seed.js';

const rec = (name: string, o: Partial<RouterRecord> = {}): RouterRecord => ({
  name, host: 'h', pid: 1, state: `/s/${name}`, failureDomain: null, address: null, dtlServer: null, lease: '1', leaseSeconds: 2, registeredAt: '', ...o,
});

test('hostOf and sameMachine: one host name and a common non-loopback address, or none on either', (t) => {
  t.is(hostOf('10.0.0.1:4000'), '10.0.0.1');
  t.is(hostOf('[fe80::1]:4000'), 'fe80::1');
  t.true(sameMachine(rec('a', { ips: ['10.0.0.1'] }), rec('b', { ips: ['10.0.0.1', '10.0.1.1'] })));
  t.false(sameMachine(rec('a', { ips: ['10.0.0.1'] }), rec('b', { ips: ['10.0.0.2'] })));
  t.false(sameMachine(rec('a', { ips: ['10.0.0.1'] }), rec('b', { host: 'other', ips: ['10.0.0.1'] })));
  t.true(sameMachine(rec('a', { address: '127.0.0.1:1' }), rec('b')), 'loopback addresses say nothing: one host name, no address');
  t.true(sameMachine(rec('a', { address: '10.0.0.3:7' }), rec('b', { ips: ['10.0.0.3'] })), 'the router link\'s address counts');
});

test('placeServers: a server belongs to the routers on its address; gone when all of them lost their lease; loopback belongs to no one', (t) => {
  const live = [rec('b', { ips: ['10.0.0.2'], failureDomain: 'r1', dtlServer: ['10.0.0.3:1'] }), rec('c', { ips: ['10.0.0.3'], failureDomain: 'r2', dtlServer: ['10.0.0.3:1', '10.0.0.2:1'] })];
  const known = [rec('a', { ips: ['10.0.0.1'], failureDomain: 'r1' }), ...live];
  const p = placeServers(['10.0.0.1:1', '10.0.0.2:1', '10.0.0.3:1', '127.0.0.1:1', '10.9.9.9:1'], live, known);
  t.like(p[0], { goneWith: ['a'], routers: [], failureDomain: 'r1', senders: 0 });
  t.like(p[1], { goneWith: [], routers: ['b'], failureDomain: 'r1', senders: 0, registeredBy: ['c'] });
  t.like(p[2], { goneWith: [], routers: ['c'], failureDomain: 'r2', senders: 2, registeredBy: ['b', 'c'] });
  t.like(p[3], { goneWith: [], routers: [], failureDomain: null });
  t.like(p[4], { goneWith: [], routers: [], failureDomain: null });
});

test('model: the taker ranked first is the best by the rules (domain, vDisks, vPools, name) and every router computes the same order', (t) => {
  const { rand: r } = seeded(t);
  for (let round = 0; round < 500; round++) {
    const n = 1 + Math.floor(r() * 6);
    const ranks: TakerRank[] = Array.from({ length: n }, (_, i) => ({
      router: rec(`r${Math.floor(r() * 100)}-${i}`), sameDomain: r() < 0.5, load: { vdisks: Math.floor(r() * 3) * 10, vpools: Math.floor(r() * 3) },
    }));
    const ranked = rankTakers(ranks);
    const key = (x: TakerRank): [number, number, number, string] => [Number(x.sameDomain), x.load.vdisks, x.load.vpools, x.router.name];
    const less = (a: TakerRank, b: TakerRank): boolean => {
      const [x, y] = [key(a), key(b)];
      for (let i = 0; i < 4; i++) if (x[i] !== y[i]) return x[i]! < y[i]!;
      return false;
    };
    const best = ranks.reduce((m, x) => (less(x, m) ? x : m));
    t.is(ranked[0]!.router.name, best.router.name, `round ${round}`);
    for (let i = 1; i < ranked.length; i++) t.false(less(ranked[i]!, ranked[i - 1]!), `round ${round}: out of order at ${i}`);
    const shuffled = [...ranks].sort(() => r() - 0.5);
    t.deepEqual(rankTakers(shuffled).map((x) => x.router.name), ranked.map((x) => x.router.name), `round ${round}: the order depends on who computes it`);
  }
});

test('model: DTL servers ranked live before gone, another domain before unknown before the owner\'s own, then fewest first choices, then registration order', (t) => {
  const { rand: r } = seeded(t);
  const domains = ['r1', 'r2', null];
  for (let round = 0; round < 300; round++) {
    const hosts = Array.from({ length: 1 + Math.floor(r() * 5) }, (_, i) => `10.0.${round % 200}.${i + 1}`);
    const servers = hosts.map((h) => `${h}:${4000 + Math.floor(r() * 10)}`);
    const all = hosts.map((h, i) => rec(`x${i}`, { ips: [h], failureDomain: domains[Math.floor(r() * 3)]!, dtlServer: servers.filter(() => r() < 0.5).sort(() => r() - 0.5) }));
    const live = all.filter(() => r() < 0.7);
    const mine = domains[Math.floor(r() * 3)]!;
    const places = placeServers(servers, live, all);
    const ranked = rankDtlServers(places, mine);
    const where = (d: string | null): number => (d === null ? 1 : d === mine ? 2 : 0);
    for (let i = 1; i < ranked.length; i++) {
      const [a, b] = [ranked[i - 1]!, ranked[i]!];
      const ka = [Number(a.goneWith.length > 0), where(a.failureDomain), a.senders, a.order];
      const kb = [Number(b.goneWith.length > 0), where(b.failureDomain), b.senders, b.order];
      const cmp = ka.findIndex((v, j) => v !== kb[j]);
      t.true(cmp >= 0 && ka[cmp]! < kb[cmp]!, `round ${round}: ${JSON.stringify(a)} before ${JSON.stringify(b)}`);
    }
    for (const p of places) {
      const on = all.filter((x) => x.ips![0] === hostOf(p.server));
      t.is(p.goneWith.length > 0, on.length > 0 && on.every((x) => !live.includes(x)), `round ${round}: gone ${p.server}`);
      t.is(p.senders, live.filter((x) => x.dtlServer![0] === p.server).length);
    }
  }
});
