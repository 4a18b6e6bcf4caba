/**
 * An etcd3 client for the registry with bounded calls: a unary call gives up after `callMs` (default 5 s), so
 * that an unreachable etcd is an error the caller can report (or, in a running router, retry) instead of a
 * hang. Watches and keepalive streams are not bounded (they live as long as the client).
 */
import { Etcd3 } from 'etcd3';
import { parseRegistryUrl } from './etcd-url.js';

export function connectRegistry(url: string, callMs = 5000): Etcd3 {
  return new Etcd3({
    hosts: parseRegistryUrl(url),
    dialTimeout: callMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callMs }),
  });
}
