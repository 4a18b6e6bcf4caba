/**
 * docs/api.yaml against the server: every route the server has is in the document and every documented
 * operation is a route; then, on a real mount, every operation is called (a success and a refusal each)
 * and each answer's status must be one the document lists for it, its body valid against the documented
 * schema (no undocumented fields either).
 */
import { ROUTES } from '../api/routes.js';
import { api, apiOf, pathParam, type Answer } from './helpers/api.js';
import { freshLayout, fuseTest, ok, q, startMount } from './helpers/mount.js';
import { docOperations, docResponse, loadApiDoc, validate } from './helpers/openapi.js';
import { noAutoSnapshots } from './helpers/snapshot-xattr.js';
import testPlain from 'ava';

const test = fuseTest();
const doc = loadApiDoc();

testPlain('the document and the server have the same routes', (t) => {
  const server = ROUTES.map((r) => `${r.method} ${r.pattern}`).sort();
  t.deepEqual(docOperations(doc), server);
  for (const r of ROUTES) t.truthy(doc.paths[r.pattern][r.method.toLowerCase()].summary, `${r.method} ${r.pattern} has a summary`);
});

test('every operation answers as documented (statuses and bodies)', async (t) => {
  const l = await freshLayout(t);
  const m = await startMount(t, { mountpoint: l.mountpoint, state: l.state, backend: l.backend, extraArgs: await noAutoSnapshots(l.root) });
  const A = apiOf(l.state);
  const seen = new Map<string, Set<number>>();
  const v = (p: string, tail = '') => `/v1/vdisks/${pathParam(p)}${tail}`;

  async function check(method: string, pattern: string, url: string, body?: unknown): Promise<Answer> {
    const a = await api(A, method, url, body);
    const r = docResponse(doc, method, pattern, a.status);
    t.truthy(r, `${method} ${pattern} answered ${a.status}, which the document does not list: ${JSON.stringify(a.body)}`);
    const schema = r?.content?.['application/json']?.schema;
    if (schema) t.deepEqual(validate(doc, schema, a.body), [], `${method} ${url} → ${a.status}: ${JSON.stringify(a.body).slice(0, 400)}`);
    else t.is(a.body, undefined, `${method} ${url} → ${a.status} documents no body`);
    const key = `${method} ${pattern}`;
    if (!seen.has(key)) seen.set(key, new Set());
    seen.get(key)!.add(a.status);
    return a;
  }

  await ok(t, `mkdir ${q(m.p('dir'))}`);
  await check('GET', '/v1/status', '/v1/status');
  await check('GET', '/v1/rekey', '/v1/rekey');
  await check('POST', '/v1/rekey', '/v1/rekey');
  await check('GET', '/v1/backend-move', '/v1/backend-move');
  t.deepEqual((await check('POST', '/v1/gc/orphans', '/v1/gc/orphans', { dryRun: true })).body, { dryRun: true, items: [] });
  t.deepEqual((await check('GET', '/v1/routers', '/v1/routers')).body, { registry: null, routers: [] }, 'a mount without a registry');
  t.is((await check('POST', '/v1/vdisks', '/v1/vdisks', { path: 'dir/a', size: 2 ** 20 })).status, 201);
  await check('POST', '/v1/vdisks', '/v1/vdisks', { path: 'dir/a', size: 1 });
  await check('POST', '/v1/vdisks', '/v1/vdisks', { path: 'dir/b', size: 2 ** 50 });
  await check('POST', '/v1/vdisks', '/v1/vdisks', { path: 'nodir/b', size: 1 });
  await ok(t, `head -c 65536 /dev/urandom | dd of=${q(m.p('dir/a'))} conv=notrunc,fsync status=none`);
  await check('GET', '/v1/vdisks', '/v1/vdisks');
  await check('GET', '/v1/vdisks', '/v1/vdisks?dir=dir&recursive=false');
  await check('GET', '/v1/vdisks', '/v1/vdisks?dir=nodir');
  await check('GET', '/v1/vdisks', '/v1/vdisks?dir=dir%2Fa');
  await check('GET', '/v1/entries', '/v1/entries?dir=/');
  await check('GET', '/v1/entries', '/v1/entries?dir=dir');
  await check('GET', '/v1/entries', '/v1/entries?dir=nodir');
  await check('GET', '/v1/entries', '/v1/entries?dir=dir%2Fa');
  await check('GET', '/v1/vdisks/{path}', v('dir/a'));
  await check('GET', '/v1/vdisks/{path}', v('dir/zz'));
  await check('GET', '/v1/vdisks/{path}', v('dir'));
  await check('PATCH', '/v1/vdisks/{path}', v('dir/a'), { size: 2 ** 21 });
  await check('PATCH', '/v1/vdisks/{path}', v('dir/a'), { size: 'big' });
  await check('PATCH', '/v1/vdisks/{path}', v('dir/zz'), { size: 1 });
  await check('POST', '/v1/vdisks/{path}/snapshots', v('dir/a', '/snapshots'), { name: 's1' });
  await check('POST', '/v1/vdisks/{path}/snapshots', v('dir/a', '/snapshots'), { name: 's1' });
  await check('POST', '/v1/vdisks/{path}/snapshots', v('dir/a', '/snapshots'), { name: 'x:y' });
  await check('POST', '/v1/vdisks/{path}/snapshots', v('dir/zz', '/snapshots'), { name: 's' });
  await check('POST', '/v1/vdisks/{path}/snapshots', v('dir/a', '/snapshots'), { name: 's2', sticky: true });
  await check('GET', '/v1/vdisks/{path}/snapshots', v('dir/a', '/snapshots'));
  await check('GET', '/v1/vdisks/{path}/snapshots', v('dir/zz', '/snapshots'));
  await check('GET', '/v1/vdisks/{path}/snapshots', v('dir', '/snapshots'));
  await check('PATCH', '/v1/vdisks/{path}/snapshots/{name}', v('dir/a', '/snapshots/s2'), { sticky: false });
  await check('PATCH', '/v1/vdisks/{path}/snapshots/{name}', v('dir/a', '/snapshots/nope'), { sticky: false });
  await check('PATCH', '/v1/vdisks/{path}/snapshots/{name}', v('dir/a', '/snapshots/s2'), {});
  await check('POST', '/v1/vdisks/{path}/clones', v('dir/a', '/clones'), { target: 'dir/c', snapshot: 's1' });
  await check('POST', '/v1/vdisks/{path}/clones', v('dir/a', '/clones'), { target: 'dir/c', snapshot: 's1' });
  await check('POST', '/v1/vdisks/{path}/clones', v('dir/a', '/clones'), { target: 'dir/d', snapshot: 'nope' });
  await check('POST', '/v1/vdisks/{path}/clones', v('dir/a', '/clones'), {});
  t.is((await check('POST', '/v1/vdisks/{path}/template', v('dir/a', '/template'))).status, 409, 's1, not the last snapshot, has a clone');
  await check('DELETE', '/v1/vdisks/{path}/snapshots/{name}', v('dir/a', '/snapshots/s1'));
  await check('DELETE', '/v1/vdisks/{path}/snapshots/{name}', v('dir/a', '/snapshots/nope'));
  await check('DELETE', '/v1/vdisks/{path}/snapshots/{name}', v('dir', '/snapshots/s1'));
  await check('DELETE', '/v1/vdisks/{path}/snapshots/{name}', v('dir/a', '/snapshots/s2'));
  await check('POST', '/v1/vdisks/{path}/rollback', v('dir/a', '/rollback'), { snapshot: 's1' });
  await check('POST', '/v1/vdisks/{path}/rollback', v('dir/a', '/rollback'), { snapshot: 'nope' });
  await check('POST', '/v1/vdisks/{path}/rollback', v('dir/a', '/rollback'), { snapshot: 3 });
  await check('POST', '/v1/vdisks/{path}/template', v('dir/c', '/template'));
  await check('POST', '/v1/vdisks/{path}/template', v('dir/zz', '/template'));
  await check('POST', '/v1/vdisks/{path}/template', v('dir', '/template'));
  await check('POST', '/v1/vdisks/{path}/snapshots', v('dir/c', '/snapshots'), { name: 'ro' });
  await check('PATCH', '/v1/vdisks/{path}', v('dir/c'), { size: 4096 });
  await check('POST', '/v1/vdisks/{path}/rollback', v('dir/c', '/rollback'), { snapshot: (await api(A, 'GET', v('dir/c', '/snapshots'))).body[0].name });
  await check('DELETE', '/v1/vdisks/{path}', v('dir/a'));
  await check('DELETE', '/v1/vdisks/{path}', v('dir/c'));
  await check('DELETE', '/v1/vdisks/{path}', v('dir/a'));
  await check('DELETE', '/v1/vdisks/{path}', v('dir/a'));
  await check('DELETE', '/v1/vdisks/{path}', v('dir'));

  for (const op of docOperations(doc)) {
    const statuses = [...(seen.get(op) ?? [])];
    t.true(statuses.some((s) => s < 300), `${op} was called with success (got ${statuses.join(', ') || 'nothing'})`);
    const [method, pattern] = op.split(' ');
    const documented = Object.keys(doc.paths[pattern][method.toLowerCase()].responses).filter((c) => /^4\d\d$/.test(c));
    for (const c of documented) t.true(statuses.includes(Number(c)), `${op}: its documented ${c} was seen (got ${statuses.join(', ')})`);
  }
});
