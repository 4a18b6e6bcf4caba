/**
 * Why a registry call failed, in words (docs/cluster.md, "TLS and authentication"). gRPC reports a failed TLS
 * handshake, a refused client certificate and plain HTTP/2 against a TLS port all alike ("14 UNAVAILABLE: No
 * connection established"), so after such a failure each endpoint is probed with Node's own TCP and TLS, with the
 * same CA and client certificate, and the answer names the endpoint and what failed:
 *   cannot connect (ECONNREFUSED …)          nothing listens, or a firewall
 *   it speaks TLS: write etcds://            plain etcd:// against a TLS port
 *   it does not speak TLS                    etcds:// against a plain port
 *   its certificate is not trusted / does not name HOST      the wrong CA, or a certificate for another name
 *   it refused the client certificate / wants one            etcd's --client-cert-auth
 * An etcd refusal (a wrong password, a user without permission, auth on and no user given) is said as such,
 * without probing. The result is a RegistryError BACKEND whose message starts with "the registry URL".
 */
import net from 'node:net';
import tls from 'node:tls';
import { EtcdAuthenticationFailedError, EtcdInvalidAuthTokenError, EtcdPermissionDeniedError } from 'etcd3';
import { RegistryError } from './errors.js';
import { parseRegistryUrl } from './etcd-url.js';
import { loadRegistryCredentials, REGISTRY_PASSWORD_ENV, type RegistryCredentials, type RegistrySecurity } from './security.js';

const PROBE_MS = 3000;
/** The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client sends first. */
const H2_PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

const UNTRUSTED = new Set(['SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_REJECTED']);

type Outcome = { ok: true; note?: string } | { ok: false; why: string };

/** OpenSSL's reason ("sslv3 alert bad certificate") rather than its whole error string. */
function reason(err: NodeJS.ErrnoException | null): string {
  if (err === null) return '';
  const m = /SSL routines:[^:]*:([^:]+):/.exec(err.message);
  return m === null ? err.message.trim() : m[1];
}

function splitHost(endpoint: string): { host: string; port: number } {
  const u = new URL(endpoint);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) };
}

/** Connects, sends `first` (over TLS when `opts` is given) and waits for an answer, an error or a close. */
function probe(host: string, port: number, opts: tls.ConnectionOptions | null): Promise<{ stage: 'connect' | 'handshake' | 'after'; err: NodeJS.ErrnoException | null; answered: boolean; closed: boolean }> {
  return new Promise((resolve) => {
    let stage: 'connect' | 'handshake' | 'after' = 'connect';
    let done = false;
    const finish = (err: NodeJS.ErrnoException | null, answered: boolean, closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ stage, err, answered, closed });
    };
    const sock: net.Socket = opts === null ? net.connect({ host, port }) : tls.connect({ host, port, ...opts });
    const timer = setTimeout(() => finish(Object.assign(new Error(`no answer within ${PROBE_MS} ms`), { code: 'ETIMEDOUT' }), false, false), PROBE_MS);
    const start = (): void => {
      stage = 'after';
      sock.write(H2_PREFACE);
    };
    if (opts === null) sock.on('connect', start);
    else {
      sock.on('connect', () => (stage = 'handshake'));
      sock.on('secureConnect', start);
    }
    sock.on('data', () => finish(null, true, false));
    sock.on('error', (err: NodeJS.ErrnoException) => finish(err, false, false));
    sock.on('close', () => finish(null, false, true));
  });
}

function tlsOptions(host: string, creds: RegistryCredentials, verify: boolean): tls.ConnectionOptions {
  const t = creds.tls ?? {};
  return {
    ...(net.isIP(host) === 0 ? { servername: host } : {}),
    ALPNProtocols: ['h2'],
    rejectUnauthorized: verify,
    ...(t.rootCertificate === undefined ? {} : { ca: t.rootCertificate }),
    ...(t.certChain === undefined ? {} : { cert: t.certChain, key: t.privateKey }),
  };
}

async function probeEndpoint(endpoint: string, creds: RegistryCredentials): Promise<Outcome> {
  const { host, port } = splitHost(endpoint);
  const sec = creds.security;
  const keys = creds.keys;
  if (creds.tls === null) {
    const plain = await probe(host, port, null);
    if (plain.stage === 'connect') return { ok: false, why: `cannot connect (${plain.err?.code ?? plain.err?.message})` };
    if (plain.answered) return { ok: true };
    const overTls = await probe(host, port, tlsOptions(host, creds, false));
    if (overTls.stage === 'after') return { ok: false, why: `it speaks TLS, and the registry URL says plain etcd://: write etcds://HOST:PORT (with ${keys.ca} naming the CA that signed its certificate)` };
    return { ok: false, why: `it connects but does not answer gRPC over plain HTTP/2 (${plain.err === null ? 'the connection was closed' : reason(plain.err)})` };
  }
  const r = await probe(host, port, tlsOptions(host, creds, true));
  const code = r.err?.code ?? '';
  const msg = reason(r.err);
  if (r.stage === 'connect' && !/EPROTO|SSL|TLS/i.test(code + msg)) return { ok: false, why: `cannot connect (${code || msg})` };
  if (r.stage !== 'after') {
    if (UNTRUSTED.has(code)) return { ok: false, why: `its TLS certificate is not trusted (${msg}): checked against ${sec.ca === undefined ? "the system's trusted CAs — give the CA that signed it as " + keys.ca : `the CA in ${sec.ca} (${keys.ca}), which did not sign it`}` };
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return { ok: false, why: `its TLS certificate does not name ${host} (${msg})` };
    if (/wrong version number|packet length too long|unknown protocol|http request/i.test(msg)) return { ok: false, why: `it does not speak TLS (${msg}): it is a plain etcd endpoint (etcd://)` };
    if (r.err === null) return { ok: false, why: 'it closed the connection during the TLS handshake' };
    return { ok: false, why: `the TLS handshake failed: ${msg}${code ? ` (${code})` : ''}` };
  }
  if (r.answered) return { ok: true };
  // TLS 1.3: the server checks the client certificate after the client's Finished, so its refusal comes as an alert now
  if (/certificate required/i.test(msg + code)) return { ok: false, why: `it requires a client certificate (etcd --client-cert-auth): give ${keys.cert} and ${keys.key}` };
  if (/alert|certificate/i.test(msg + code) && sec.cert === undefined) return { ok: false, why: `it refused a connection without a client certificate (${msg}): it wants one (etcd --client-cert-auth): give ${keys.cert} and ${keys.key}` };
  if (/alert|certificate/i.test(msg + code)) return { ok: false, why: `it refused the client certificate${sec.cert === undefined ? '' : ` ${sec.cert}`} (${msg}): is it signed by the CA etcd trusts (its --trusted-ca-file)?` };
  if (r.err !== null) return { ok: false, why: `after the TLS handshake: ${msg}${code ? ` (${code})` : ''}` };
  return { ok: false, why: 'it closed the connection after the TLS handshake' };
}

/**
 * The RegistryError to throw for `err`, a failed call on the registry `url` (a refusal by etcd, or endpoints
 * that could not be reached: then probed). Errors that are already RegistryErrors pass through.
 */
export async function registryFailure(url: string, security: RegistrySecurity | RegistryCredentials | undefined, err: unknown): Promise<RegistryError> {
  if (err instanceof RegistryError) return err;
  const e = err as Error;
  const creds = security !== undefined && 'summary' in security ? security : loadRegistryCredentials(url, security);
  const etcdSaid = e.message.replace(/^\d+ [A-Z_]+: /, '').replace(/^etcdserver: /, '');
  // etcd3's own words go in the context, not as the cause: the CLI would print "14 UNAVAILABLE: No connection established" after the answer
  const ctx = { registry: url, etcd3: e.message };
  if (err instanceof EtcdAuthenticationFailedError) {
    return new RegistryError('BACKEND', `the registry ${url} refused user '${creds.auth?.username}': ${etcdSaid} (${creds.summary})`, ctx);
  }
  if (err instanceof EtcdPermissionDeniedError || err instanceof EtcdInvalidAuthTokenError || /user name is empty|permission denied|invalid auth token/.test(e.message)) {
    const hint = creds.auth === null ? `: etcd's auth is on — give ${creds.keys.user} and a password (${creds.keys.passwordFile} or $${REGISTRY_PASSWORD_ENV})` : ` to user '${creds.auth.username}': grant it read and write on /vpoolfs/ (etcdctl role grant-permission --prefix)`;
    return new RegistryError('BACKEND', `the registry ${url} refused the call (${etcdSaid})${hint}`, ctx);
  }
  const endpoints = parseRegistryUrl(url);
  const outcomes = await Promise.all(endpoints.map((ep) => probeEndpoint(ep, creds).catch((pe: unknown) => ({ ok: false, why: `probe failed: ${(pe as Error).message}` }) as Outcome)));
  const bad = endpoints.map((ep, i) => [ep, outcomes[i]] as const).filter(([, o]) => !o.ok).map(([ep, o]) => `${ep.replace(/^https?:\/\//, '')}: ${(o as { why: string }).why}`);
  const breaker = /circuit breaker is open/.test(e.message);
  const why = bad.length > 0 ? bad.join('; ')
    // etcd3 stops calling an endpoint for 5 s after 3 failures in a row: etcd was away and is back
    : breaker ? 'every endpoint answers now, but this client still holds its calls back after recent failures (etcd3\'s circuit breaker, 5 s): try again'
    : `every endpoint connects, but the call failed: ${e.message}`;
  return new RegistryError('BACKEND', `the registry ${url} does not answer: ${why}`, ctx);
}
