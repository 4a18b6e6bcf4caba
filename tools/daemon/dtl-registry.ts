/**
 * The DTL servers of a router with a registry, placed by what the registry knows (docs/cluster.md, "The DTL's
 * servers from the registry"): every router records the DTL servers it sends to (`dtlServer` in its
 * registration) and its host's addresses (`ips`). An owner with a DTL reads the registrations every few seconds
 * and keeps its own list — the array its DTL bridges and recoveries read (dtl-client/: `servers`, tried in
 * order) — in this order (registry/placement.ts):
 *
 *   1. the servers it was configured with, in the operator's order;
 *   2. the servers other routers registered, best first: another failure domain than this router's (the
 *      domain of the router(s) on the server's address), then an unknown one, then its own; among those the
 *      fewest live routers sending to it first; then the registration order;
 *   3. last, the servers on the address of routers whose registry lease has expired (gone with their host, or
 *      cut off): a connect to a black-holed address costs the DTL client's timeout before the next is tried.
 *      One comes back to its place when a router on its address is alive again.
 *
 * So when this router's DTL server dies, a vDisk's bridge goes `degraded`, and at its next retry (`dtlRetryMs`)
 * it moves on to the best server another router registered: `catchup`, `ok_sync` there — and its takeover
 * record is safe again (registry/takeover.ts). Servers are only added, never removed.
 */
import type { Etcd3 } from 'etcd3';
import { goneDtlServers, placeServers, rankDtlServers, readRouters, type ServerPlace } from '../../registry/placement.js';
import type { RouterSession } from '../../registry/router-session.js';
import { logger } from '../../util/log.js';

const log = logger('dtl');

export const DTL_WATCH_MS = 2000;

/**
 * The order of `configured` and `added` for an owner in `domain` (above), and each server's place. The servers
 * live routers registered that are in neither list are appended to `added` (servers are only ever added).
 */
export async function orderDtlServers(client: Etcd3, configured: string[], added: string[], domain: string | null): Promise<{ order: string[]; places: ServerPlace[] }> {
  const { live, known } = await readRouters(client);
  for (const r of live) for (const s of r.dtlServer ?? []) if (!configured.includes(s) && !added.includes(s)) added.push(s);
  const places = placeServers([...configured, ...added], live, known);
  const gone = (p: ServerPlace): boolean => p.goneWith.length > 0;
  const mine = places.filter((p) => configured.includes(p.server));
  const theirs = rankDtlServers(places.filter((p) => !configured.includes(p.server)), domain);
  const order = [...mine.filter((p) => !gone(p)), ...theirs.filter((p) => !gone(p)), ...mine.filter(gone), ...theirs.filter(gone)].map((p) => p.server);
  return { order, places };
}

function describe(p: ServerPlace, configured: boolean): string {
  const where = p.goneWith.length > 0 ? `gone: router(s) ${p.goneWith.join(', ')} lost their lease`
    : p.routers.length > 0 ? `router(s) ${p.routers.join(', ')}, failure domain ${p.failureDomain ?? 'unknown'}` : 'no router on its address';
  const by = p.registeredBy.length > 0 ? `registered by ${p.registeredBy.map((n) => `router '${n}'`).join(', ')}; ` : '';
  return `${p.server} (${configured ? 'configured; ' : ''}${by}${where}; first choice of ${p.senders} router(s))`;
}

/** Starts watching; returns the stop function. `servers` is the list the DTL provider was given (reordered in place). */
export function watchRegisteredDtlServers(session: RouterSession, servers: string[], everyMs = DTL_WATCH_MS): () => void {
  const configured = [...servers];
  const added: string[] = [];
  let busy = false;
  const once = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      const { order, places } = await orderDtlServers(session.registry.client, configured, added, session.registry.record.failureDomain);
      if (order.join(',') !== servers.join(',')) {
        servers.splice(0, servers.length, ...order);
        const byServer = new Map(places.map((p) => [p.server, p]));
        log.info(`DTL servers of this router, in the order they are tried (configured first, then those other routers registered: another failure domain than this router's first, then the least used; servers of routers whose lease expired last): ${order.map((s) => describe(byServer.get(s)!, configured.includes(s))).join('; ')}`,
          { servers: [...servers], failureDomain: session.registry.record.failureDomain });
      }
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

/** For the DTL recovery (dtl-client/recover.ts): the servers of `servers` whose routers' registry leases expired. */
export function goneServersOf(session: RouterSession): (servers: string[]) => Promise<Map<string, string>> {
  return (servers) => goneDtlServers(session.registry.client, servers);
}
