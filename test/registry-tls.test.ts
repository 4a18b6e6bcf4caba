/**
 * TLS and authentication to etcd, and `router list` through a mount (issue 15, docs/cluster.md "TLS and
 * authentication"), against a real etcd started by the test with TLS only (certificates made with openssl: a
 * CA, a server certificate for 127.0.0.1, a client certificate, --client-cert-auth) and etcd's auth on (user
 * root with a password, `etcdctl auth enable`):
 * - the settings: etcds:// URLs, refusals of settings that cannot work (before anything dials); what a failure
 *   says against servers that are not etcd (a certificate for another address, a port that closes at once);
 * - a router mounted with `--registry etcds://…` and the CA, client certificate, user and password file
 *   registers; `router list` over TLS shows it; `router list PATH` (and `--mount PATH`), with no etcd address nor
 *   credentials, asks the mount's API and prints the same;
 * - each way of getting it wrong is a clear error naming the endpoint and what failed, exit 1, nothing mounted:
 *   the wrong CA, no client certificate, a certificate etcd does not trust, a wrong password, no user, plain
 *   etcd:// against the TLS port; and etcd down, asked through the mount.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import testPlain from 'ava';
import { validateConfig, ConfigError } from '../tools/daemon/config.js';
import { parseRegistryUrl, registryUsesTls, RegistryConfigError } from '../registry/etcd-url.js';
import { connectRegistry } from '../registry/connect.js';
import { registryFailure } from '../registry/diagnose.js';
import { loadRegistryCredentials, type RegistrySecurity } from '../registry/security.js';
import { makeTlsFiles } from './helpers/etcd-tls.js';
import { apiOf, api } from './helpers/api.js';
import { CLI, fuseTest, isMounted, q, sh, startMount, tempRoot, type MountOpts } from './helpers/mount.js';
import { loadApiDoc, validate } from './helpers/openapi.js';
import { cluster, refusedMount, type Cluster, type RouterRow } from './helpers/registry.js';
import { until } from './helpers/until.js';

const test = fuseTest();

testPlain('etcds:// URLs and the TLS and user settings: what cannot work is refused before anything dials, naming the setting', async (t) => {
  t.deepEqual(parseRegistryUrl('etcds://127.0.0.1:2379,b.example:2'), ['https://127.0.0.1:2379', 'https://b.example:2']);
  t.true(registryUsesTls('etcds://a:1'));
  t.false(registryUsesTls('etcd://a:1'));
  for (const bad of ['etcdss://a:1', 'https://a:1', 'etcds://a']) t.throws(() => parseRegistryUrl(bad), { instanceOf: RegistryConfigError }, bad);
  t.deepEqual(validateConfig({ registry: 'etcds://h:1', registryCa: '/ca.pem', registryCert: '/c.pem', registryKey: '/c.key', registryUser: 'root', registryPasswordFile: '/pw' }, 'f.json').registryUser, 'root');
  t.throws(() => validateConfig({ registryPassword: 'secret' }, 'f.json'), { instanceOf: ConfigError, message: /unknown key "registryPassword"/ }, 'no password in the config file');

  const root = await tempRoot(t, 'vpoolfs-registry-tls-');
  const pem = path.join(root, 'x.pem');
  writeFileSync(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  const notPem = path.join(root, 'x.txt');
  writeFileSync(notPem, 'hello');
  const pw = path.join(root, 'pw');
  writeFileSync(pw, 'p4ss\nignored\n');
  const refused = (url: string, sec: Parameters<typeof loadRegistryCredentials>[1], re: RegExp) => t.throws(() => loadRegistryCredentials(url, sec), { instanceOf: RegistryConfigError, message: re });
  refused('etcd://h:1', { ca: pem }, /^registryCa: only with TLS to etcd — the registry etcd:\/\/h:1 is plain etcd:\/\/; write etcds:\/\//);
  refused('etcds://h:1', { cert: pem }, /^registryCert: a client certificate needs both registryCert and registryKey \(registryKey is missing\)/);
  refused('etcds://h:1', { ca: path.join(root, 'none.pem') }, /^registryCa \S+none\.pem: cannot read the CA certificate \(ENOENT\)/);
  refused('etcds://h:1', { ca: notPem }, /^registryCa \S+x\.txt: not PEM/);
  refused('etcd://h:1', { user: 'root' }, /^registryUser root: which password\? Give registryPasswordFile FILE \(its first line\) or set VPOOLFS_REGISTRY_PASSWORD/);
  refused('etcd://h:1', { passwordFile: pw }, /^registryPasswordFile: a password needs a user/);
  // the file's first line; the file wins over the environment; the summary never shows the password
  const c = loadRegistryCredentials('etcds://h:1', { ca: pem, user: 'root', passwordFile: pw, password: 'from-env' });
  t.deepEqual(c.auth, { username: 'root', password: 'p4ss' });
  t.deepEqual(loadRegistryCredentials('etcd://h:1', { user: 'root', password: 'from-env' }).auth, { username: 'root', password: 'from-env' });
  t.notRegex(c.summary, /p4ss/);
  t.regex(c.summary, /^TLS with CA \S+x\.pem, user 'root' \(password from \S+pw\)$/);
});

testPlain('what failed, in words, against servers that are not etcd: a certificate for another address, a port that closes at once', async (t) => {
  const root = await tempRoot(t, 'vpoolfs-registry-tls-');
  const files = makeTlsFiles(root, '127.0.0.2');
  const tlsServer = tls.createServer({ cert: readFileSync(files.serverCert), key: readFileSync(files.serverKey) }, (s) => s.destroy());
  const closer = net.createServer((s) => s.destroy());
  const listen = (srv: net.Server) => new Promise<number>((r) => srv.listen(0, '127.0.0.1', () => r((srv.address() as net.AddressInfo).port)));
  const [tlsPort, plainPort] = [await listen(tlsServer), await listen(closer)];
  t.teardown(() => { tlsServer.close(); closer.close(); });
  const failure = async (url: string, sec: RegistrySecurity) => {
    const client = connectRegistry(url, sec, 2000);
    try {
      await client.get('x').string();
      return 'answered';
    } catch (err) {
      return (await registryFailure(url, sec, err)).message;
    } finally {
      client.close();
    }
  };
  t.regex(await failure(`etcds://127.0.0.1:${tlsPort}`, { ca: files.ca }), new RegExp(`^the registry etcds://127\\.0\\.0\\.1:${tlsPort} does not answer: 127\\.0\\.0\\.1:${tlsPort}: its TLS certificate does not name 127\\.0\\.0\\.1 \\(`));
  t.regex(await failure(`etcd://127.0.0.1:${plainPort}`, {}), new RegExp(`^the registry etcd://127\\.0\\.0\\.1:${plainPort} does not answer: 127\\.0\\.0\\.1:${plainPort}: it connects but does not answer gRPC over plain HTTP/2 \\(the connection was closed\\)$`));
});

/** The routers as `router list` prints them with these arguments (JSON or text); the exit code and stderr too. */
async function routerList(args: string, env = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return sh(`env -u VPOOLFS_REGISTRY ${env} node ${q(CLI)} router list ${args}`, { timeoutMs: 40_000 });
}

/** `opts` without these flags (and their values). */
function without(opts: MountOpts, ...flags: string[]): MountOpts {
  const args = opts.extraArgs ?? [];
  return { ...opts, extraArgs: args.filter((_, i) => !flags.includes(args[i]) && !flags.includes(args[i - 1])) };
}

function registryArgs(c: Cluster, over: Record<string, string | null> = {}): string {
  const flags: Record<string, string | null> = { '--registry': c.etcd.url, ...Object.fromEntries(c.etcd.securityArgs.flatMap((a, i, all) => (i % 2 === 0 ? [[a, all[i + 1]]] : []))), ...over };
  return Object.entries(flags).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${q(v!)}`).join(' ');
}

test('a router over TLS and etcd auth registers; router list over TLS and through the mount (no etcd address nor credentials) agree; each wrong setting is a clear error, nothing mounted', async (t) => {
  const c = await cluster(t, undefined, undefined, { tls: true, auth: { password: 'r00t-secret' } });
  const tls = c.etcd.tls!;
  const a = await startMount(t, c.router('ra'));
  await sh(`head -c 256K /dev/urandom > ${q(a.p('disk'))} && mkdir ${q(a.p('dir'))}`);

  // registered, over TLS with the client certificate and the user root; its vDisk recorded
  await until('ra registered with its vDisk', async () => (await c.routers()).some((r) => r.name === 'ra' && r.state === 'alive' && r.vdisks.length === 1));
  t.true(c.etcd.url.startsWith('etcds://127.0.0.1:'));
  t.regex(a.log, /registered in the registry/);
  t.regex(a.log, /"registryAccess":"TLS with CA \S+\/ca\.pem, client certificate \S+\/client\.pem, user 'root' \(password from \S+\/root\.password\)"/);
  t.notRegex(a.log, /r00t-secret/, 'the password is never logged');

  // the same routers through the mount's API: PATH, or --mount PATH; no --registry, no VPOOLFS_REGISTRY, no TLS files
  // (the registry may change between two reads — a vDisk's protection recorded as clean once shipped — so the
  // answer through the mount is compared with two reads of etcd around it that agree)
  const sameAsEtcd = async (mountArgs: string, etcdArgs: string): Promise<string> => {
    let got = '';
    await until(`router list ${mountArgs} as from etcd`, async () => {
      const before = await routerList(etcdArgs);
      const via = await routerList(mountArgs);
      const after = await routerList(etcdArgs);
      t.is(via.code, 0, via.stderr);
      got = via.stdout;
      return before.stdout === after.stdout && via.stdout === before.stdout;
    });
    return got;
  };
  const rowsVia = JSON.parse(await sameAsEtcd(`${q(a.p('dir'))} --json`, `${registryArgs(c)} --json`)) as RouterRow[];
  t.deepEqual(rowsVia.map((r) => [r.name, r.state, r.vdisks.map((d) => d.path)]), [['ra', 'alive', ['/disk']]]);
  const tableVia = await sameAsEtcd(`--mount ${q(a.mountpoint)}`, registryArgs(c));
  const viaMountFlag = { stdout: tableVia };
  t.regex(viaMountFlag.stdout, /^ra\s+alive\s+owner\s+pool\s/m);
  // the API's answer is what docs/api.yaml says
  const answer = await api(apiOf(path.join(c.root, 'ra-state')), 'GET', '/v1/routers');
  t.is(answer.status, 200);
  t.is((answer.body as { registry: string }).registry, c.etcd.url);
  const doc = loadApiDoc();
  t.deepEqual(validate(doc, doc.paths['/v1/routers'].get.responses['200'].content!['application/json'].schema, answer.body), []);
  const both = await routerList(`${q(a.mountpoint)} --registry ${q(c.etcd.url)}`);
  t.is(both.code, 1);
  t.regex(both.stderr, /^vpoolfs: router list: give --registry \(ask etcd\) or a path on a mount \(ask its router\), not both/);

  // router list straight to etcd, each setting wrong in turn: exit 1, the endpoint and what failed
  const ep = `127\\.0\\.0\\.1:${c.etcd.clientPort}`;
  const url = `etcds://${ep}`;
  const cases: Array<[string, string, RegExp, string?]> = [
    ['the wrong CA', registryArgs(c, { '--registry-ca': tls.otherCa }), new RegExp(`^vpoolfs: the registry ${url} does not answer: ${ep}: its TLS certificate is not trusted \\(.+\\): checked against the CA in \\S+other-ca\\.pem \\(--registry-ca \\(VPOOLFS_REGISTRY_CA\\)\\), which did not sign it \\(BACKEND\\)$`, 'm')],
    ["no CA (the system's)", registryArgs(c, { '--registry-ca': null }), new RegExp(`^vpoolfs: the registry ${url} does not answer: ${ep}: its TLS certificate is not trusted \\(.+\\): checked against the system's trusted CAs`, 'm')],
    ['no client certificate', registryArgs(c, { '--registry-cert': null, '--registry-key': null }), new RegExp(`^vpoolfs: the registry ${url} does not answer: ${ep}: it refused a connection without a client certificate \\(.+\\): it wants one \\(etcd --client-cert-auth\\): give --registry-cert`, 'm')],
    ['a client certificate of another CA', registryArgs(c, { '--registry-cert': tls.otherCert, '--registry-key': tls.otherKey }), new RegExp(`^vpoolfs: the registry ${url} does not answer: ${ep}: it refused the client certificate \\S+other-client\\.pem`, 'm')],
    ['plain etcd:// against the TLS port', `--registry etcd://127.0.0.1:${c.etcd.clientPort} --registry-user root --registry-password-file ${q(c.etcd.passwordFile!)}`, new RegExp(`^vpoolfs: the registry etcd://${ep} does not answer: ${ep}: it speaks TLS, and the registry URL says plain etcd://: write etcds://`, 'm')],
    ['a wrong password', registryArgs(c, { '--registry-password-file': null }), new RegExp(`^vpoolfs: the registry ${url} refused user 'root': authentication failed, invalid user ID or password \\(.*password from \\$VPOOLFS_REGISTRY_PASSWORD\\)`, 'm'), 'VPOOLFS_REGISTRY_PASSWORD=wrong'],
    ['no user (auth is on)', registryArgs(c, { '--registry-user': null, '--registry-password-file': null }), new RegExp(`^vpoolfs: the registry ${url} refused the call \\(.+\\): etcd's auth is on — give --registry-user`, 'm')],
  ];
  for (const [what, args, re, env] of cases) {
    const r = await routerList(`${args} --json`, env);
    t.is(r.code, 1, `${what}: ${r.stdout}${r.stderr}`);
    t.regex(r.stderr, re, what);
    t.is(r.stdout, '', what);
  }
  // right: the password from the environment; every setting from the environment
  const envPw = await routerList(`${registryArgs(c, { '--registry-password-file': null })} --json`, 'VPOOLFS_REGISTRY_PASSWORD=r00t-secret');
  t.is(envPw.code, 0, envPw.stderr);
  t.deepEqual((JSON.parse(envPw.stdout) as RouterRow[]).map((r) => r.name), ['ra']);
  const allEnv = await sh(`VPOOLFS_REGISTRY=${q(c.etcd.url)} VPOOLFS_REGISTRY_CA=${q(tls.ca)} VPOOLFS_REGISTRY_CERT=${q(tls.clientCert)} VPOOLFS_REGISTRY_KEY=${q(tls.clientKey)} VPOOLFS_REGISTRY_USER=root VPOOLFS_REGISTRY_PASSWORD_FILE=${q(c.etcd.passwordFile!)} node ${q(CLI)} router list --json`);
  t.is(allEnv.code, 0, allEnv.stderr);
  t.deepEqual((JSON.parse(allEnv.stdout) as RouterRow[]).map((r) => r.name), ['ra']);
  // takeover over TLS: the owner is alive, nothing to take (it reached etcd with the same flags)
  const tk = await sh(`env -u VPOOLFS_REGISTRY node ${q(CLI)} takeover --vpool pool ${registryArgs(c)}`);
  t.is(tk.code, 1);
  t.regex(tk.stderr, /^vpoolfs: vPool 'pool' is owned by router 'ra' \(owner tag \d+\), which is alive .*Nothing changed \(BUSY\)$/m, 'takeover read the owner over TLS');

  // mounts that get it wrong: refused, exit 1, the same sentences, nothing mounted, nothing registered
  const wrong: Array<[string, string[], RegExp, Record<string, string>?]> = [
    ['the wrong CA', ['--registry-ca', tls.otherCa], /the registry etcds:\/\/127\.0\.0\.1:\d+ does not answer: 127\.0\.0\.1:\d+: its TLS certificate is not trusted .*which did not sign it/],
    ['a wrong password', ['--registry-password-file', path.join(c.root, 'wrong.pw')], /the registry etcds:\/\/127\.0\.0\.1:\d+ refused user 'root': authentication failed, invalid user ID or password/],
  ];
  writeFileSync(path.join(c.root, 'wrong.pw'), 'not-the-password\n');
  for (const [what, extra, re] of wrong) {
    const r = await refusedMount(c.router('rb', extra));
    t.is(r.code, 1, `${what}: ${r.log}`);
    t.regex(r.log, re, what);
    t.false(await isMounted(path.join(c.root, 'rb-mnt')), what);
  }
  // no password at all: refused before dialling
  const noPw = await refusedMount(without(c.router('rb'), '--registry-password-file'));
  t.is(noPw.code, 1, noPw.log);
  t.regex(noPw.log, /--registry-user \(registryUser\) root: which password\? Give --registry-password-file \(registryPasswordFile\) FILE \(its first line\) or set VPOOLFS_REGISTRY_PASSWORD/);
  // plain etcd:// against the TLS port (no TLS files, the right user and password)
  const plainOpts = without(c.router('rb'), '--registry-ca', '--registry-cert', '--registry-key');
  plainOpts.extraArgs![plainOpts.extraArgs!.indexOf('--registry') + 1] = `etcd://127.0.0.1:${c.etcd.clientPort}`;
  const plain = await refusedMount(plainOpts);
  t.is(plain.code, 1, plain.log);
  t.regex(plain.log, /the registry etcd:\/\/127\.0\.0\.1:\d+ does not answer: 127\.0\.0\.1:\d+: it speaks TLS, and the registry URL says plain etcd:\/\/: write etcds:\/\//);
  t.false(await isMounted(path.join(c.root, 'rb-mnt')));
  // a mount with the password from the environment follows the owner (it registered)
  const envOpts = { ...without(c.router('rc'), '--registry-password-file'), env: { VPOOLFS_REGISTRY_PASSWORD: 'r00t-secret' } };
  const rc = await startMount(t, envOpts);
  await until('rc registered as a follower', async () => (await c.routers()).some((r) => r.name === 'rc' && r.state === 'alive' && r.role === 'follower'));
  t.deepEqual((await c.routers()).map((r) => r.name), ['ra', 'rc'], 'the refused routers left nothing in the registry');
  // through a follower's mount: its user.vpool.api is the owner's (the call is forwarded), the same registry answers
  const viaFollower = await routerList(`${q(rc.mountpoint)} --json`);
  t.is(viaFollower.code, 0, viaFollower.stderr);
  t.deepEqual((JSON.parse(viaFollower.stdout) as RouterRow[]).map((r) => [r.name, r.role]), [['ra', 'owner'], ['rc', 'follower']]);
  t.is(await rc.stop(), 0);

  // etcd down: the mount serves on, and `router list PATH` says so, naming the endpoint
  await c.etcd.stop();
  const down = await routerList(q(a.p('disk')));
  t.is(down.code, 1);
  t.regex(down.stderr, new RegExp(`^vpoolfs: router list: the registry ${url} does not answer: ${ep}: cannot connect \\(ECONNREFUSED\\) \\(EIO\\)$`, 'm'));
  t.is((await sh(`head -c 4096 ${q(a.p('disk'))} | wc -c`)).stdout.trim(), '4096');
  await c.etcd.start();
  // the router registers again (its old token is void after the restart: etcd3 trades the password for a new
  // one; registry/connect.ts says why there is no circuit breaker with a user) and answers through the mount
  let rows: RouterRow[] = [];
  await until('ra registered again, through the mount', async () => {
    const r = await routerList(`${q(a.p('disk'))} --json`);
    if (r.code !== 0) t.regex(r.stderr, /does not answer/, r.stderr);
    rows = r.code === 0 ? JSON.parse(r.stdout) as RouterRow[] : [];
    return rows.some((x) => x.name === 'ra' && x.state === 'alive');
  });
  t.deepEqual(rows.map((r) => r.name), ['ra']);
  t.regex(a.log, /the registry lease is renewed again|registered again in the registry/);
});

test('router list through a mount without a registry says so', async (t) => {
  const root = await tempRoot(t, 'vpoolfs-registry-none-');
  const m = await startMount(t, { mountpoint: path.join(root, 'pool'), state: path.join(root, 'state'), backend: `file://${path.join(root, 'backend')}` });
  const r = await routerList(q(m.mountpoint));
  t.is(r.code, 1);
  t.regex(r.stderr, /^vpoolfs: router list: the vPool 'pool' at \S+ is not mounted with a registry \(--registry\); give --registry etcd:\/\/HOST:PORT\[,…\] to ask etcd itself$/m);
  const none = await routerList('');
  t.is(none.code, 1);
  t.regex(none.stderr, /^vpoolfs: router list: which registry\? Give --registry .* or the path of a registry mount \(PATH or --mount PATH\)/);
});
