/**
 * What the automatic move per vDisk counts (tools/daemon/vdisk-automove.ts), in process, beside the real-mount drill
 * of test/registry-live-migration.test.ts:
 * - model-based: a real LinkServer on loopback TCP over a plain table of files, three routers' LinkClients (each
 *   naming itself with an Ident) doing seeded random opens (read-only, write-only, read-write), creates, releases,
 *   renames (through the link) and connection closes; after each, `holdersByPath()` (handles open for writing per
 *   path, per router: a read-only open never moves a vDisk) equals a plain reference
 *   (VPOOLFS_SEED replays; VPOOLFS_HOLDERS_ROUNDS sets the count);
 * - a delegate's answer to `vdiskHolders` (`delegateHolders`): its own handles under its name, the routers on its
 *   delegate link but the asker.
 */
import test from 'ava';
import type { Handlers } from '../fuse/handlers.js';
import { LinkClient } from '../router-link/client.js';
import { LinkServer } from '../router-link/server.js';
import { delegateHolders } from '../tools/daemon/vdisk-automove.js';
import { setLogLevel } from '../util/log.js';
import { seeded } from './helpers/seed.js';
import { until } from './helpers/until.js';

type Cb = (code: number, ...values: unknown[]) => void;

setLogLevel('error');

/** Flat files by path; open/create/release/rename as a vPool's handlers answer them. */
function table(files: Set<string>): Handlers {
  let next = 1;
  return {
    open: (p: string, _f: number, cb: Cb) => (files.has(p) ? cb(0, next++) : cb(-2)),
    create: (p: string, _m: number, cb: Cb) => {
      if (files.has(p)) return cb(-17);
      files.add(p);
      cb(0, next++);
    },
    release: (_p: string, _fh: number, cb: Cb) => cb(0),
    rename: (from: string, to: string, cb: Cb) => {
      if (!files.has(from) || files.has(to)) return cb(-2);
      files.delete(from);
      files.add(to);
      cb(0);
    },
  };
}

type Model = Map<string, Map<string, number>>;

function holdersOf(open: Array<{ router: string; handles: Map<number, string>; readOnly: Set<number> }>): Model {
  const m: Model = new Map();
  for (const c of open) {
    for (const [fh, p] of c.handles) {
      if (c.readOnly.has(fh)) continue;
      const per = m.get(p) ?? new Map<string, number>();
      per.set(c.router, (per.get(c.router) ?? 0) + 1);
      m.set(p, per);
    }
  }
  return m;
}

const plain = (m: Model) => Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)).map(([p, per]) => [p, Object.fromEntries([...per].sort())]));

test('holdersByPath: the handles of each router per path, through opens, creates, releases, renames and closed connections (seeded model)', async (t) => {
  const { int } = seeded(t);
  const rounds = Number(process.env.VPOOLFS_HOLDERS_ROUNDS ?? 400);
  const files = new Set(['/a', '/b', '/c']);
  const server = await LinkServer.start({ host: '127.0.0.1', port: 0, router: 'owner', vpool: 'pool', ops: table(files) });
  t.teardown(() => server.close());
  const names = ['r1', 'r2', 'r3'];
  const clients = new Map<string, { router: string; client: LinkClient; handles: Map<number, string>; readOnly: Set<number> }>();
  const connect = async (router: string) => {
    const client = await LinkClient.connect({ address: server.address, vpool: 'pool', router });
    clients.set(router, { router, client, handles: new Map(), readOnly: new Set() });
  };
  for (const r of names) await connect(r);
  const pathNames = ['/a', '/b', '/c', '/d', '/e'];
  for (let i = 0; i < rounds; i++) {
    const r = names[int(names.length)];
    let c = clients.get(r);
    if (c === undefined) {
      await connect(r);
      c = clients.get(r)!;
    }
    const op = int(10);
    if (op < 4) {
      const p = pathNames[int(pathNames.length)];
      const flags = int(3); // O_RDONLY, O_WRONLY, O_RDWR
      const res = await c.client.call('open', [p, flags]);
      t.is(res.code >= 0, files.has(p));
      if (res.code >= 0) c.handles.set(res.values[0] as number, p);
      if (res.code >= 0 && flags === 0) c.readOnly.add(res.values[0] as number);
    } else if (op < 5) {
      const p = pathNames[int(pathNames.length)];
      const had = files.has(p);
      const res = await c.client.call('create', [p, 0o644]);
      t.is(res.code >= 0, !had);
      if (res.code >= 0) c.handles.set(res.values[0] as number, p);
    } else if (op < 8) {
      const fhs = [...c.handles.keys()];
      if (fhs.length === 0) continue;
      const fh = fhs[int(fhs.length)];
      t.is((await c.client.call('release', [c.handles.get(fh)!, fh])).code, 0);
      c.handles.delete(fh);
      c.readOnly.delete(fh);
    } else if (op < 9) {
      // mostly a held file to a free name (a rename an open handle must follow), sometimes any two names
      const held = [...clients.values()].flatMap((x) => [...x.handles.values()]);
      const from = held.length > 0 && int(4) > 0 ? held[int(held.length)] : pathNames[int(pathNames.length)];
      const free = pathNames.filter((x) => !files.has(x));
      const to = free.length > 0 && int(4) > 0 ? free[int(free.length)] : pathNames[int(pathNames.length)];
      const res = await c.client.call('rename', [from, to]);
      if (res.code >= 0) for (const x of clients.values()) for (const [fh, p] of x.handles) if (p === from) x.handles.set(fh, to);
    } else {
      // a router goes away: the server releases what it held
      const before = server.connections;
      c.client.close('the test closes it');
      clients.delete(r);
      await until('the server saw the connection go', () => server.connections === before - 1);
    }
    t.deepEqual(plain(server.holdersByPath()), plain(holdersOf([...clients.values()])), `after step ${i}`);
  }
  for (const c of clients.values()) c.client.close();
});

test('a delegate\'s answer: its own handles under its name, the routers on its link but the asker', (t) => {
  t.deepEqual(JSON.parse(delegateHolders('rb', 2, new Map([['ra', 3], ['rc', 1]]), 'ra')), { rb: 2, rc: 1 });
  t.deepEqual(JSON.parse(delegateHolders('rb', 0, new Map([['ra', 3]]), 'ra')), {}, 'nothing but the asker\'s: none');
  t.deepEqual(JSON.parse(delegateHolders('rb', 1, undefined, 'ra')), { rb: 1 });
  t.deepEqual(JSON.parse(delegateHolders('rb', 0, new Map([['rc', 2], ['rb', 1]]), 'ra')), { rc: 2, rb: 1 });
});
