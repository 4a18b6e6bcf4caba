/**
 * How the registry verbs (`router list`, `takeover`, `move`) open etcd: the URL from `--registry` or
 * $VPOOLFS_REGISTRY (a ConfigError naming the verb when neither is given, or when it is not etcd://HOST:PORT),
 * a client with bounded calls (registry/connect.ts), and `down`, which turns an etcd failure into the one-line
 * BACKEND error the CLI prints (`the registry … does not answer: …`). The caller closes the client.
 */
import type { Etcd3 } from 'etcd3';
import { connectRegistry } from '../../registry/connect.js';
import { RegistryError } from '../../registry/errors.js';
import { RegistryUrlError } from '../../registry/etcd-url.js';
import { ConfigError } from '../daemon/config.js';

export interface OpenedRegistry {
  client: Etcd3;
  url: string;
  /** Rethrows an etcd failure as RegistryError BACKEND naming the registry. */
  down: (err: unknown) => never;
  close(): void;
}

export function openRegistry(verb: string, url = process.env.VPOOLFS_REGISTRY): OpenedRegistry {
  if (url === undefined || url === '') throw new ConfigError(`${verb}: which registry? Give --registry etcd://HOST:PORT[,HOST:PORT…] (or VPOOLFS_REGISTRY)`);
  let client: Etcd3;
  try {
    client = connectRegistry(url);
  } catch (err) {
    if (err instanceof RegistryUrlError) throw new ConfigError(err.message);
    throw err;
  }
  return {
    client, url,
    down: (err: unknown): never => {
      if (err instanceof RegistryError || err instanceof ConfigError) throw err;
      throw new RegistryError('BACKEND', `the registry ${url} does not answer: ${(err as Error).message}`, { registry: url });
    },
    close: () => client.close(),
  };
}
