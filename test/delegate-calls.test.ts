/**
 * The edges of the API's forwarding to a delegate (tools/daemon/delegate-calls.ts), in memory beside the real
 * routers' test (test/vdisk-move-api.test.ts): a delegate whose link is down or that does not answer gives a 503
 * naming it (never a wait past the bound), a path served here runs here, and the delegate takes only the routes
 * marked `forward` and only for the vDisks it serves.
 */
import test from 'ava';
import { DelegateForwarder, delegateCalls } from '../tools/daemon/delegate-calls.js';
import { FdTable } from '../fuse/fds.js';
import { DelegatedVPool } from '../volume/vpool-delegates.js';
import type { BlobStore } from '../volume/backend/types.js';

const caller = (call: () => Promise<{ code: number; values: unknown[] }>) => ({
  delegated: new Map([['/disk', 'rb']]),
  callDelegate: async (p: string) => (p === '/disk' ? { router: 'rb', ...(await call()) } : undefined),
});

test('a delegate whose link is down: CLOSED (503) naming the router and the vDisk', async (t) => {
  const f = new DelegateForwarder(() => caller(() => Promise.reject(new Error('its delegate link is down'))), 60_000);
  const err = await t.throwsAsync(f.api('/disk', 'GET', '/v1/vdisks/disk/snapshots', undefined));
  t.like(err, { status: 503, body: { code: 'CLOSED', object: 'disk' } });
  t.regex(err!.message, /^GET \/v1\/vdisks\/disk\/snapshots: disk is served by router 'rb' \(delegated by the vPool's owner\), which cannot be reached now \(its delegate link is down\)$/);
});

test('a delegate that does not answer: CLOSED after the bound, naming the router', async (t) => {
  const f = new DelegateForwarder(() => caller(() => new Promise(() => undefined)), 50);
  const err = await t.throwsAsync(f.api('/disk', 'POST', '/v1/vdisks/disk/rollback', { snapshot: 's1' }));
  t.like(err, { status: 503, body: { code: 'CLOSED' } });
  t.regex(err!.message, /router 'rb' .* did not answer within 0\.05 s \(it may still finish there: see its log\)/);
  // the schedule's calls too
  await t.throwsAsync(f.takeAutomatic('/disk', 'auto-x', 0), { message: /did not answer within/ });
});

test('a path served here is not forwarded; an answer is passed on as the delegate gave it', async (t) => {
  const f = new DelegateForwarder(() => caller(async () => ({ code: 0, values: [409, Buffer.from(JSON.stringify({ error: { code: 'BUSY', message: 'm' } }))] })), 60_000);
  t.is(await f.api('/other', 'GET', '/v1/vdisks/other', undefined), undefined);
  t.deepEqual(await f.api('/disk', 'GET', '/v1/vdisks/disk', undefined), { status: 409, body: { error: { code: 'BUSY', message: 'm' } } });
  t.is(await new DelegateForwarder(() => undefined, 60_000).api('/disk', 'GET', '/v1/vdisks/disk', undefined), undefined);
});

test('the delegate answers only the forwarded routes, only for the vDisks it serves', async (t) => {
  const calls = delegateCalls({ facade: new DelegatedVPool('pool', 'rb'), fds: new FdTable(), mountpoint: '/nowhere', stateDir: '/nowhere', backend: () => Promise.resolve({} as BlobStore) });
  const ask = (method: string, url: string) => new Promise<{ status: number; body: { error: { code: string; message: string } } }>((resolve) => {
    calls.vdiskApi(method, url, Buffer.alloc(0), (code: number, status: number, body: Buffer) => {
      t.is(code, 0);
      resolve({ status, body: JSON.parse(body.toString()) as { error: { code: string; message: string } } });
    });
  });
  const status = await ask('GET', '/v1/status');
  t.is(status.status, 400);
  t.regex(status.body.error.message, /^GET \/v1\/status: answered by the vPool's owner, not by a router a vDisk is delegated to$/);
  const notHere = await ask('GET', '/v1/vdisks/disk/snapshots');
  t.is(notHere.status, 409);
  t.regex(notHere.body.error.message, /^list the snapshots of disk: \/disk is not a vDisk this router serves/);
});
