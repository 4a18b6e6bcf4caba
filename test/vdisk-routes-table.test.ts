/**
 * router-link/vdisk-routes.ts in memory, beside the mount tests (test/vdisk-move.test.ts, test/vdisk-direct-routes.test.ts):
 * recording handler tables stand for the vPool's owner, a delegate and another router, so that the order of an open
 * and a change of route can be set exactly — what the mounts only hit by chance.
 */
import test from 'ava';
import type { Handlers } from '../fuse/handlers.js';
import { RoutedTable, VDiskRoutes } from '../router-link/vdisk-routes.js';

type Cb = (code: number, ...values: unknown[]) => void;

/** A handler table that records each call and answers it when `answer()` says so (opens get handle 7). */
function recorder(name: string, log: string[], delayed: Array<() => void>, delayOpen = false): Handlers {
  const h: Handlers = {};
  for (const op of ['open', 'write', 'release', 'getattr']) {
    h[op] = (...args: unknown[]) => {
      const cb = args[args.length - 1] as Cb;
      log.push(`${name} ${op}`);
      const reply = () => (op === 'open' ? cb(0, 7) : op === 'write' ? cb(4) : cb(0));
      if (op === 'open' && delayOpen) delayed.push(reply);
      else reply();
    };
  }
  return h;
}

/** The routes, a mount's table on the owner whose opens answer only when `delayed` says so, a delegate, another router. */
function ownerDelaysOpens() {
  const log: string[] = [];
  const delayed: Array<() => void> = [];
  const routes = new VDiskRoutes(1000);
  const owner = recorder('owner', log, delayed, true);
  return { log, delayed, routes, table: new RoutedTable(routes, owner), delegate: recorder('delegate', log, delayed), other: recorder('other', log, delayed) };
}

const call = (t: RoutedTable, op: string, ...args: unknown[]) => new Promise<unknown[]>((resolve) => t.ops[op](...args, (...r: unknown[]) => resolve(r)));

test('an open answered after its path changed router: released there, its writes go where the path is served now', async (t) => {
  const { log, delayed, routes, table, delegate } = ownerDelaysOpens();
  const opened = call(table, 'open', '/disk', 2);
  // the owner has not answered the open yet when the path moves to the delegate
  routes.set('/disk', delegate);
  delayed.shift()!();
  const [code, fh] = await opened;
  t.is(code, 0);
  t.deepEqual(await call(table, 'write', '/disk', fh, Buffer.from('data'), 4, 0), [4]);
  t.deepEqual(log, ['owner open', 'owner release', 'delegate open', 'delegate write']);
});

test('a handle re-opened lazily after a move, the path moving again before that re-open answered: released there, its writes go where the path is served now', async (t) => {
  const { log, delayed, routes, table, delegate, other } = ownerDelaysOpens();
  routes.set('/disk', delegate);
  const [code, fh] = await call(table, 'open', '/disk', 2);
  t.is(code, 0);
  // the vDisk comes back to the default table: the handle is released at the delegate, re-opened at its next call
  routes.set('/disk', null);
  const wrote = call(table, 'write', '/disk', fh, Buffer.from('data'), 4, 0);
  // the path moves on (a follower's direct route to another delegate) while the owner has not answered that re-open
  routes.setDirect('/disk', other);
  delayed.shift()!();
  t.deepEqual(await wrote, [4]);
  t.deepEqual(await call(table, 'write', '/disk', fh, Buffer.from('more'), 4, 4), [4]);
  t.deepEqual(log, ['delegate open', 'delegate release', 'owner open', 'owner release', 'other open', 'other write', 'other write']);
});

test('direct routes apply to a router\'s own mount, not to the calls that came over its delegate link; its own route wins', async (t) => {
  const log: string[] = [];
  const routes = new VDiskRoutes(1000);
  const owner = recorder('owner', log, []);
  const other = recorder('other', log, []);
  const mine = recorder('mine', log, []);
  const mount = new RoutedTable(routes, owner);
  const link = new RoutedTable(routes, owner, undefined, false);
  routes.setDirect('/disk', other);
  await call(mount, 'open', '/disk', 2);
  await call(link, 'open', '/disk', 2);
  t.deepEqual(log.splice(0), ['other open', 'owner open']);
  // this router serves it itself: its own route, whatever the direct one says
  routes.set('/disk', mine);
  await call(mount, 'open', '/disk', 2);
  routes.setDirect('/disk', null);
  await call(mount, 'open', '/disk', 2);
  routes.set('/disk', null);
  await call(mount, 'open', '/disk', 2);
  t.deepEqual(log, ['other release', 'owner release', 'mine open', 'mine open', 'mine release', 'mine release', 'owner open']);
});
