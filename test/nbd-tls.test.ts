/**
 * NBD over TCP with TLS (NBD_OPT_STARTTLS, `--nbd-tls-cert/--nbd-tls-key`): a self-signed certificate for
 * 127.0.0.1, libnbd and qemu-img connecting with TLS and verifying it, a client without TLS refused with
 * NBD_REP_ERR_TLS_REQD, and a TCP listener off loopback without TLS refused at start with a clear message.
 */
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLI, fuseTest, logEntries, tempRoot } from './helpers/mount.js';
import { nbdPython, ok, q, sh, startNbdMount } from './helpers/nbd.js';

const test = fuseTest();

test('TLS on a TCP listener: libnbd and qemu-img with TLS work, a client without TLS is refused', async (t) => {
  const root = await tempRoot(t, 'vpoolfs-nbdtls-');
  const pki = path.join(root, 'pki');
  await mkdir(pki);
  await ok(t, `openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost `
    + `-keyout ${q(path.join(pki, 'server-key.pem'))} -out ${q(path.join(pki, 'server-cert.pem'))} 2>&1`);
  await ok(t, `cp ${q(path.join(pki, 'server-cert.pem'))} ${q(path.join(pki, 'ca-cert.pem'))}`);
  const n = await startNbdMount(t, ['--nbd', '127.0.0.1:0', '--nbd-tls-cert', path.join(pki, 'server-cert.pem'), '--nbd-tls-key', path.join(pki, 'server-key.pem')]);
  const ready = logEntries(n.m.log, 'ready')[0]!;
  const tcp = (ready.nbd as string[]).find((a) => a.startsWith('127.0.0.1:'))!;
  const port = Number(tcp.split(':')[1]);
  t.true(port > 0, JSON.stringify(ready));
  await writeFile(n.m.p('tls.img'), '');
  await truncate(n.m.p('tls.img'), 2 ** 20);

  const withTls = await nbdPython(`
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_certificates(sys.argv[1])
h.set_export_name('tls.img')
h.connect_tcp('127.0.0.1', sys.argv[2])
assert h.get_tls_negotiated()
h.pwrite(b'secret' * 100, 4096, nbd.CMD_FLAG_FUA)
assert h.pread(600, 4096) == b'secret' * 100
h.shutdown()
print('ok')
`, [pki, String(port)]);
  t.is(withTls.code, 0, withTls.stdout + withTls.stderr);
  t.is(withTls.stdout.trim(), 'ok');

  const noTls = await nbdPython(`
h = nbd.NBD()
h.set_tls(nbd.TLS_DISABLE)
h.set_export_name('tls.img')
try:
    h.connect_tcp('127.0.0.1', sys.argv[1])
except nbd.Error as e:
    print('refused', e.string)
    sys.exit(0)
print('connected without TLS')
`, [String(port)]);
  t.regex(noTls.stdout, /^refused/, noTls.stdout + noTls.stderr);

  // qemu-img over TLS, checking the server's certificate against ca-cert.pem
  const info = await ok(t, `qemu-img info --output=json --object tls-creds-x509,id=tls0,dir=${q(pki)},endpoint=client `
    + `--image-opts driver=nbd,host=127.0.0.1,port=${port},export=tls.img,tls-creds=tls0`);
  t.is((JSON.parse(info) as { 'virtual-size': number })['virtual-size'], 2 ** 20);
  // the unix socket of the same daemon needs no TLS
  await ok(t, `qemu-io -f raw -c 'read -P 0 0 4k' ${q(n.uri('tls.img'))}`);
});

test('a TCP listener off loopback without TLS is refused at start, with the reason', async (t) => {
  const root = await tempRoot(t, 'vpoolfs-nbdtls-');
  const r = await sh(`${q(process.execPath)} ${q(CLI)} mount ${q(path.join(root, 'vp'))} --state ${q(path.join(root, 'state'))} --nbd 0.0.0.0:0`, { timeoutMs: 60_000 });
  t.not(r.code, 0);
  t.regex(r.stderr + r.stdout, /refusing to serve NBD on 0\.0\.0\.0:0 without TLS/);
});
