/**
 * The registry's address: `etcd://HOST:PORT[,HOST:PORT…]` (the `--registry` flag and the `registry` config key)
 * turned into the endpoint URLs the etcd3 client dials (`http://HOST:PORT`). Plain HTTP: etcd on loopback or a
 * trusted network; TLS to etcd is not implemented yet (docs/cluster.md).
 */
export class RegistryUrlError extends Error {}

export function parseRegistryUrl(url: string, key = '--registry'): string[] {
  const m = /^etcd:\/\/(.+)$/.exec(url.trim());
  if (m === null) throw new RegistryUrlError(`${key}: expected etcd://HOST:PORT[,HOST:PORT…], got ${JSON.stringify(url)}`);
  return m[1].split(',').map((part) => {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(part.trim());
    const port = hp === null ? NaN : Number(hp[2]);
    if (hp === null || port < 1 || port > 65535) throw new RegistryUrlError(`${key}: ${JSON.stringify(part)} in ${JSON.stringify(url)} is not HOST:PORT`);
    return `http://${hp[1]}:${port}`;
  });
}
