/**
 * NBD listen addresses (`--nbd`): `unix:/PATH` for a unix socket, `HOST:PORT` for TCP, and the rule that
 * nothing unauthenticated leaves the host: a TCP listener on anything but loopback needs TLS
 * (`--nbd-tls-cert` and `--nbd-tls-key`), as the DTL needs its secret.
 */
import net from 'node:net';
import path from 'node:path';

export type NbdAddress = { kind: 'unix'; path: string; text: string } | { kind: 'tcp'; host: string; port: number; text: string };

/** Parses one address; throws an Error naming `key` and what was expected. */
export function parseNbdAddress(s: string, key: string): NbdAddress {
  if (s.startsWith('unix:')) {
    const p = s.slice(5);
    if (!path.isAbsolute(p)) throw new Error(`${key}: a unix socket address is unix:/ABSOLUTE/PATH, got ${JSON.stringify(s)}`);
    return { kind: 'unix', path: path.resolve(p), text: s };
  }
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s/]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new Error(`${key}: expected unix:/PATH or HOST:PORT, got ${JSON.stringify(s)}`);
  return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port, text: s };
}

/** True for an address that only this host can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return net.isIPv4(host) && host.startsWith('127.');
}

/** Refuses a TCP listener off loopback without TLS, with the reason and the fix. */
export function checkNbdListen(addresses: NbdAddress[], hasTls: boolean, key: string): void {
  for (const a of addresses) {
    if (a.kind === 'tcp' && !isLoopback(a.host) && !hasTls) {
      throw new Error(`${key}: refusing to serve NBD on ${a.text} without TLS: anyone on the network could read and write every vDisk. `
        + 'Give --nbd-tls-cert and --nbd-tls-key (clients then use NBD STARTTLS), or listen on loopback or a unix socket');
    }
  }
}
