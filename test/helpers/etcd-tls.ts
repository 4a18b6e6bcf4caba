/**
 * Certificates for a TLS etcd in the tests (test/helpers/etcd.ts `tls`), made with `openssl` into a directory:
 * a CA, a server certificate for the etcd host (an IP SAN), a client certificate signed by the same CA, and a
 * second CA with its own client certificate — the "wrong CA" and "a certificate etcd does not trust" of the
 * refusal tests. EC P-256 keys: quick to make.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

export interface TlsFiles {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed neither etcd's certificate nor the client's. */
  otherCa: string;
  /** A client certificate signed by otherCa (etcd does not trust it). */
  otherCert: string;
  otherKey: string;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function selfSigned(dir: string, name: string, cn: string): void {
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${cn}`);
}

function signed(dir: string, name: string, cn: string, ca: string, ext: string): void {
  writeFileSync(path.join(dir, `${name}.ext`), ext);
  openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
}

/** Makes the files in `dir`; the server certificate names `host` (an IP address). */
export function makeTlsFiles(dir: string, host: string): TlsFiles {
  selfSigned(dir, 'ca', 'vpoolfs test CA');
  selfSigned(dir, 'other-ca', 'another CA');
  // clientAuth too: etcd's own gateway dials its client port with this certificate (--client-cert-auth checks it)
  signed(dir, 'server', 'etcd', 'ca', `subjectAltName=IP:${host}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  // not the name of an etcd user: with etcd's auth on, the certificate alone grants nothing (etcd takes a client
  // certificate's CN as the user when no token is given)
  signed(dir, 'client', 'vpoolfs-client', 'ca', 'extendedKeyUsage=clientAuth\n');
  signed(dir, 'other-client', 'vpoolfs-client', 'other-ca', 'extendedKeyUsage=clientAuth\n');
  const f = (n: string) => path.join(dir, n);
  return {
    ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key'),
    otherCa: f('other-ca.pem'), otherCert: f('other-client.pem'), otherKey: f('other-client.key'),
  };
}
