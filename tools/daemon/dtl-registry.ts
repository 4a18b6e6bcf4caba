/**
 * The DTL servers registered by the other routers of the registry, added to this router's list (docs/cluster.md,
 * "The DTL's servers from the registry"): every router records the DTL servers it sends to (`dtlServer` in its
 * registration). An owner with a DTL reads the live registrations every few seconds and appends the servers it
 * does not know to its own list — the array its DTL bridges and recovery read (dtl-client/: `servers`, tried in
 * order, the configured ones first). So when this router's DTL server dies, a vDisk's bridge goes `degraded`,
 * and at its next retry (`dtlRetryMs`) it moves on to a server another router registered: `catchup`, `ok_sync`
 * there — and its takeover record is safe again (registry/takeover.ts). Servers are only added, never removed
 * (one that is gone costs a failed connect at each retry, before the next one is tried).
 */
import { routerKey, type RouterRecord } from '../../registry/keys.js';
import type { RouterSession } from '../../registry/router-session.js';
import { logger } from '../../util/log.js';

const log = logger('dtl');

export const DTL_WATCH_MS = 2000;

/** Starts watching; returns the stop function. `servers` is the list the DTL provider was given (mutated). */
export function watchRegisteredDtlServers(session: RouterSession, servers: string[], everyMs = DTL_WATCH_MS): () => void {
  let busy = false;
  const once = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      const live = Object.values(await session.registry.client.getAll().prefix(routerKey('')).strings()).map((v) => JSON.parse(v) as RouterRecord);
      const added: string[] = [];
      for (const r of live) {
        for (const s of r.dtlServer ?? []) {
          if (!servers.includes(s)) {
            servers.push(s);
            added.push(`${s} (router '${r.name}')`);
          }
        }
      }
      if (added.length > 0) log.info(`DTL servers registered by other routers added to this router's list (tried after the configured ones): ${added.join(', ')}`, { servers: [...servers] });
    } catch {
      // etcd unreachable: the list stays as it is; tried again at the next period
    } finally {
      busy = false;
    }
  };
  void once();
  const timer = setInterval(() => void once(), everyMs).unref();
  return () => clearInterval(timer);
}
