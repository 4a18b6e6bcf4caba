/**
 * The registry's address: `etcd://HOST:PORT[,HOST:PORT…]` (plain HTTP/2: etcd on loopback or a trusted network)
 * or `etcds://HOST:PORT[,HOST:PORT…]` (TLS to every endpoint; the CA, a client certificate and a user name go in
 * their own keys: ./security.ts), given as the `--registry` flag and the `registry` config key, turned into the
 * endpoint URLs the etcd3 client dials (`http://HOST:PORT` or `https://HOST:PORT`). docs/cluster.md, "TLS and
 * authentication".
 */
/** A registry setting that cannot work as given (the address, a TLS file, the user and password): the message names the key. */
export class RegistryConfigError extends Error {}
export class RegistryUrlError extends RegistryConfigError {}

/** Whether the registry URL asks for TLS (`etcds://`). */
export function registryUsesTls(url: string): boolean {
  return /^etcds:\/\//.test(url.trim());
}

export function parseRegistryUrl(url: string, key = '--registry'): string[] {
  const m = /^(etcds?):\/\/(.+)$/.exec(url.trim());
  if (m === null) throw new RegistryUrlError(`${key}: expected etcd://HOST:PORT[,HOST:PORT…] (or etcds://… for TLS), got ${JSON.stringify(url)}`);
  const scheme = m[1] === 'etcds' ? 'https' : 'http';
  return m[2].split(',').map((part) => {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(part.trim());
    const port = hp === null ? NaN : Number(hp[2]);
    if (hp === null || port < 1 || port > 65535) throw new RegistryUrlError(`${key}: ${JSON.stringify(part)} in ${JSON.stringify(url)} is not HOST:PORT`);
    return `${scheme}://${hp[1]}:${port}`;
  });
}
