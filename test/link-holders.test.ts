/**
 * What the automatic move per vDisk counts (tools/daemon/vdisk-automove.ts), in process, beside the real-mount drill
 * of test/registry-live-migration.test.ts:
 * - model-based: the owner's tables wired as the daemon wires them (tools/commands/mount-owner.ts,
 *   tools/daemon/follower.ts: one VDiskRoutes; the link's RoutedTable over a plain table of files and a real
 *   LinkServer on loopback TCP told the router's renames; its own mount's RoutedTable over a FollowerTable serving
 *   that table locally), three routers' LinkClients (each naming itself with an Ident) and the owner's own mount
 *   doing seeded random opens (read-only, write-only, read-write), creates, releases, renames (through the link
 *   and on the owner's own mount) and connection closes; after each, `holdersByPath()` (handles open for writing
 *   per path, per router: a read-only open never moves a vDisk) and the own mount's `handlesByPath()` equal a
 *   plain reference, and now and then the FollowerTable, switched to its target anew, re-opens each own handle
 *   under its path now (VPOOLFS_SEED replays; VPOOLFS_HOLDERS_ROUNDS sets the count);
 * - a delegate's answer to `vdiskHolders` (`delegateHolders`): its own handles under its name, the routers on its
 *   delegate link but the asker.
 */
import test from 'ava';
import type { Handlers } from '../fuse/handlers.js';
import { LinkClient } from '../router-link/client.js';
import { FollowerTable } from '../router-link/follower-table.js';
import { LinkServer } from '../router-link/server.js';
import { RoutedTable, VDiskRoutes } from '../router-link/vdisk-routes.js';
import { delegateHolders } from '../tools/daemon/vdisk-automove.js';
import { setLogLevel } from '../util/log.js';
import { seeded } from './helpers/seed.js';
import { until } from './helpers/until.js';

type Cb = (code: number, ...values: unknown[]) => void;

setLogLevel('error');

/** Flat files by path; open/create/release/rename as a vPool's handlers answer them (each open's path to `opened`). */
function table(files: Set<string>, opened: string[] = []): Handlers {
  let next = 1;
  return {
    open: (p: string, _f: number, cb: Cb) => {
      if (!files.has(p)) return cb(-2);
      opened.push(p);
      cb(0, next++);
    },
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

test('holdersByPath and the own mount\'s handles: each router\'s per path, through opens, creates, releases, renames (through the link and on the owner\'s own mount) and closed connections (seeded model)', async (t) => {
  const { int } = seeded(t);
  const rounds = Number(process.env.VPOOLFS_HOLDERS_ROUNDS ?? 400);
  const files = new Set(['/a', '/b', '/c']);
  const opened: string[] = [];
  const base = table(files, opened);
  // the owner's tables as the daemon builds them: one VDiskRoutes per router, the own mount's RoutedTable over the
  // mount's FollowerTable (serving this router's handlers), the link's RoutedTable over the handlers
  const routes = new VDiskRoutes(60_000);
  const ft = new FollowerTable(60_000, () => undefined);
  await ft.switchTo({ kind: 'local', ops: base });
  routes.onRename((from, to) => ft.followRename(from, to)); // as tools/daemon/follower.ts
  const own = new RoutedTable(routes, ft.ops);
  const server = await LinkServer.start({ host: '127.0.0.1', port: 0, router: 'owner', vpool: 'pool', ops: new RoutedTable(routes, base).ops, renames: routes });
  t.teardown(() => server.close());
  const ownCall = (op: string, ...args: unknown[]) => new Promise<{ code: number; values: unknown[] }>((resolve) => own.ops[op](...args, (code: number, ...values: unknown[]) => resolve({ code, values })));
  /** The own mount's handles: fh → path, opened for writing. */
  const mine = new Map<number, { path: string; write: boolean }>();
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
    const op = int(12);
    if (op >= 10) {
      // the owner's own mount: an open, a create or a release (op 10), or a rename (op 11)
      const held = [...clients.values()].flatMap((x) => [...x.handles.values()]).concat([...mine.values()].map((h) => h.path));
      if (op === 11) {
        const from = held.length > 0 && int(4) > 0 ? held[int(held.length)] : pathNames[int(pathNames.length)];
        const free = pathNames.filter((x) => !files.has(x));
        const to = free.length > 0 && int(4) > 0 ? free[int(free.length)] : pathNames[int(pathNames.length)];
        const can = files.has(from) && !files.has(to);
        const res = await ownCall('rename', from, to);
        t.is(res.code >= 0, can);
        if (res.code >= 0) {
          for (const x of clients.values()) for (const [fh, p] of x.handles) if (p === from) x.handles.set(fh, to);
          for (const h of mine.values()) if (h.path === from) h.path = to;
        }
      } else if (mine.size > 0 && int(3) === 0) {
        const fh = [...mine.keys()][int(mine.size)];
        t.is((await ownCall('release', mine.get(fh)!.path, fh)).code, 0);
        mine.delete(fh);
      } else {
        const p = pathNames[int(pathNames.length)];
        const create = int(4) === 0;
        const flags = int(3);
        const had = files.has(p);
        const res = create ? await ownCall('create', p, 0o644) : await ownCall('open', p, flags);
        t.is(res.code >= 0, create ? !had : had);
        if (res.code >= 0) mine.set(res.values[0] as number, { path: p, write: create || flags !== 0 });
      }
    } else if (op < 4) {
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
      if (res.code >= 0) {
        for (const x of clients.values()) for (const [fh, p] of x.handles) if (p === from) x.handles.set(fh, to);
        for (const h of mine.values()) if (h.path === from) h.path = to;
      }
    } else {
      // a router goes away: the server releases what it held
      const before = server.connections;
      c.client.close('the test closes it');
      clients.delete(r);
      await until('the server saw the connection go', () => server.connections === before - 1);
    }
    t.deepEqual(plain(server.holdersByPath()), plain(holdersOf([...clients.values()])), `after step ${i}`);
    const ownWriters = new Map<string, number>();
    for (const h of mine.values()) if (h.write) ownWriters.set(h.path, (ownWriters.get(h.path) ?? 0) + 1);
    t.deepEqual(Object.fromEntries([...own.handlesByPath()].sort()), Object.fromEntries([...ownWriters].sort()), `the own mount's handles after step ${i}`);
    if (i % 25 === 24) {
      // a new target (as after a takeover): the FollowerTable re-opens each own handle by the path it has now
      opened.length = 0;
      await ft.switchTo({ kind: 'local', ops: base });
      t.deepEqual(opened.sort(), [...mine.values()].map((h) => h.path).sort(), `the own handles re-opened by path after step ${i}`);
    }
  }
  for (const c of clients.values()) c.client.close();
});

test('a delegate\'s answer: its own handles under its name, the routers on its link but the asker', (t) => {
  t.deepEqual(JSON.parse(delegateHolders('rb', 2, new Map([['ra', 3], ['rc', 1]]), 'ra')), { rb: 2, rc: 1 });
  t.deepEqual(JSON.parse(delegateHolders('rb', 0, new Map([['ra', 3]]), 'ra')), {}, 'nothing but the asker\'s: none');
  t.deepEqual(JSON.parse(delegateHolders('rb', 1, undefined, 'ra')), { rb: 1 });
  t.deepEqual(JSON.parse(delegateHolders('rb', 0, new Map([['rc', 2], ['rb', 1]]), 'ra')), { rc: 2, rb: 1 });
});
