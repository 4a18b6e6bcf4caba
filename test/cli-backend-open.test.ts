/**
 * A backend that cannot be used at mount time is reported, with its URL and the cause, and nothing is
 * mounted: a directory that cannot be created (procfs answers ENOENT, on which node's mkdir -p loops
 * forever), a file where a directory should be, an S3 endpoint that refuses connections, and one that
 * accepts them and never answers (a hung endpoint: unreachable after a few seconds, not a hang).
 */
import test from 'ava';
import net from 'node:net';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLI, freshLayout, isMounted, q, sh } from './helpers/mount.js';

async function mountFails(t: import('ava').ExecutionContext, backend: string, env = '') {
  const l = await freshLayout(t);
  // the time limit only turns a hang into a failure; the daemon itself gives up after a few seconds
  const r = await sh(`${env} node ${q(CLI)} mount ${q(l.mountpoint)} --state ${q(l.state)} --backend ${q(backend)}`, { timeoutMs: 120_000 });
  t.is(r.code, 1, `the mount must fail, not hang or succeed: ${r.stderr.slice(-500)}`);
  t.false(await isMounted(l.mountpoint), 'nothing mounted');
  return { l, err: r.stderr.trim().split('\n').pop()!, log: r.stderr };
}

test('file:// that cannot be created, or is a file: the URL, the directory and why', async (t) => {
  const proc = await mountFails(t, 'file:///proc/vpoolfs-nope');
  t.is(proc.err, 'vpoolfs: the backend file:///proc/vpoolfs-nope: cannot create the directory /proc/vpoolfs-nope (ENOENT: that filesystem takes no new directories there) (BACKEND)');
  const l = await freshLayout(t);
  const file = path.join(l.root, 'a-file');
  await writeFile(file, 'x');
  const f = await mountFails(t, `file://${file}`);
  t.is(f.err, `vpoolfs: the backend file://${file}: ${file} is a file, not a directory (INVALID)`);
  const under = await mountFails(t, `file://${file}/sub`);
  t.regex(under.err, /^vpoolfs: the backend file:\/\/.*\/a-file\/sub: cannot look at .*\/a-file\/sub \(ENOTDIR: a path component is a file\)/);
});

test('s3:// refusing connections, or accepting and never answering: unreachable, with the cause', async (t) => {
  const env = 'AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=y';
  const refusing = net.createServer();
  await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
  const closedPort = (refusing.address() as net.AddressInfo).port;
  await new Promise((resolve) => refusing.close(resolve));
  const refused = await mountFails(t, `s3://vpoolfs-test/p?endpoint=http://127.0.0.1:${closedPort}&region=us-east-1&forcePathStyle=true`, env);
  t.regex(refused.err, new RegExp(`^vpoolfs: the backend s3://vpoolfs-test/p/\\?endpoint=http%3A%2F%2F127\\.0\\.0\\.1%3A${closedPort}.* is unreachable \\(.*ECONNREFUSED.*\\)`));

  const sockets = new Set<net.Socket>();
  const hung = net.createServer((s) => sockets.add(s)); // accepts, never answers
  await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    hung.close();
  });
  const port = (hung.address() as net.AddressInfo).port;
  const h = await mountFails(t, `s3://vpoolfs-test/p?endpoint=http://127.0.0.1:${port}&region=us-east-1&forcePathStyle=true`, env);
  t.regex(h.err, new RegExp(`^vpoolfs: the backend s3://vpoolfs-test/p/\\?endpoint=http%3A%2F%2F127\\.0\\.0\\.1%3A${port}.* is unreachable \\(no answer within 30 s\\)`));
  t.true(sockets.size > 0, 'the daemon did reach the hung endpoint');
  t.regex(h.log, /"message":"the backend has not answered for 5 s; waiting up to 30 s"/, 'the log says so within seconds');
});
