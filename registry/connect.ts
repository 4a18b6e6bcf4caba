/**
 * An etcd3 client for the registry with bounded calls: a unary call gives up after `callMs` (default 5 s), so
 * that an unreachable etcd is an error the caller can report (or, in a running router, retry) instead of a
 * hang. Watches and keepalive streams are not bounded (they live as long as the client).
 * With `etcds://` every endpoint is dialled over TLS (the CA and client certificate of ./security.ts); with a
 * user, etcd3 trades user and password for a token before the first call (and again when it expires).
 * When a call fails, ./diagnose.ts says why in words (`registryFailure`).
 */
import { Etcd3, type IOptions } from 'etcd3';
import { parseRegistryUrl } from './etcd-url.js';
import { loadRegistryCredentials, type RegistryCredentials, type RegistrySecurity } from './security.js';

let warningFiltered = false;
/**
 * gRPC sets the TLS ServerName to the endpoint's host even when it is an IP address, which Node flags once per
 * process (DEP0123, "Setting the TLS ServerName to an IP address is not permitted by RFC 6066"). The certificate
 * is still checked against the IP (its IP SAN), so the warning only confuses the output of `router list`: drop
 * that one warning, nothing else.
 */
function filterIpServerNameWarning(): void {
  if (warningFiltered) return;
  warningFiltered = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const [warning, second, third] = args;
    const code = typeof second === 'object' && second !== null ? (second as { code?: string }).code : third;
    if (code === 'DEP0123' || (warning instanceof Error && (warning as Error & { code?: string }).code === 'DEP0123')) return;
    emit(...args);
  }) as typeof process.emitWarning;
}

/**
 * No circuit breaker per endpoint when there is a user. etcd3 retries a call that etcd answers "invalid auth
 * token" (every token, after an etcd restart) from inside that call; when the call is the breaker's half-open
 * trial (etcd was away a few seconds), cockatiel makes the retry wait for the trial to end, which waits for the
 * retry: every later call of the client hung for good (seen: a router with a user never registered again after an
 * etcd restart). Without the breaker a call to an endpoint that is down fails at once (refused) or at its
 * deadline, and etcd3's global retry tries another endpoint. etcd3 only calls `execute` on this policy.
 */
const PASS_THROUGH = { execute: async <T>(fn: () => T | Promise<T>): Promise<T> => fn() } as unknown as ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;

/** `security`: settings to check and read (throws RegistryConfigError), or credentials already read. */
export function connectRegistry(url: string, security?: RegistrySecurity | RegistryCredentials, callMs = 5000): Etcd3 {
  const hosts = parseRegistryUrl(url);
  const creds = security !== undefined && 'summary' in security ? security : loadRegistryCredentials(url, security);
  const options: IOptions = {
    hosts,
    dialTimeout: callMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callMs }),
  };
  if (creds.tls !== null) {
    filterIpServerNameWarning();
    // no CA: etcd3 hands gRPC no root certificate, which then uses Node's trusted roots
    if (creds.tls.rootCertificate !== undefined || creds.tls.certChain !== undefined) options.credentials = creds.tls as NonNullable<IOptions['credentials']>;
  }
  if (creds.auth !== null) {
    options.auth = { ...creds.auth, callOptions: () => ({ deadline: Date.now() + callMs }) };
    options.faultHandling = { host: () => PASS_THROUGH };
  }
  return new Etcd3(options);
}
