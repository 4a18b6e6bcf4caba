/**
 * Placement from what the registry knows (docs/cluster.md, "Placement: another failure domain, then the least
 * loaded" and "The DTL's servers from the registry"): which surviving router takes a dead owner's vPool over,
 * which DTL servers a vDisk prefers, and which DTL servers went with a router whose lease expired. Pure rankings over registrations, fed by cheap reads:
 *
 * - **A machine** is where a router runs: registrations with the same host name and a common address (`ips`,
 *   the host's non-loopback interface addresses, recorded at registration), or the same host name and no
 *   address on either. Several routers (one mount per vPool) may share a machine: they share its load.
 * - **The load of a machine**: the vDisks and vPools owned by the live routers on it — a router owns the vPool
 *   its registration says `role: owner` for, and the vDisk records under that vPool (counted by etcd with a
 *   count-only range: no record is transferred, so it stays cheap at 10,000 vDisks).
 * - **The takers' order**: another failure domain than the dead owner's first, then the least loaded machine
 *   (fewest vDisks, then fewest vPools), then by router name: deterministic, so every follower computes the same.
 * - **A DTL server's router**: the routers whose machine has the server's IP address (a DTL server runs on a
 *   router's host). Loopback servers belong to no router (they are on the machine of whoever asks). Its failure
 *   domain is theirs when they agree; it is *gone* when every router on its address has an expired lease.
 * - **The DTL servers' order** (after the ones a router was configured with, which keep the operator's order):
 *   servers of live routers before gone ones, another failure domain than the owner's first (then unknown, then
 *   the owner's own), then the fewest live routers sending to it first (their registered list starts with
 *   it), then the registration order (router name, then its list).
 */
import os from 'node:os';
import type { Etcd3 } from 'etcd3';
import { knownRouterKey, routerKey, vdisksPrefix, type RouterRecord } from './keys.js';

export interface Load {
  vdisks: number;
  vpools: number;
}

/** The addresses of this host's interfaces, loopback left out: recorded in the registration as `ips`. */
export function hostAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && !out.includes(a.address)) out.push(a.address);
  }
  return out.sort();
}

/** The IP of `HOST:PORT` or `[V6]:PORT`. */
export function hostOf(address: string): string {
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(address);
  if (v6) return v6[1]!;
  const i = address.lastIndexOf(':');
  return i < 0 ? address : address.slice(0, i);
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** The addresses a registration says its machine has: `ips`, and its router link's and API's addresses. */
export function addressesOf(r: RouterRecord): string[] {
  const out = new Set(r.ips ?? []);
  for (const a of [r.address, r.api]) if (a != null && a !== '' && !a.startsWith('/')) out.add(hostOf(a));
  return [...out].filter((ip) => !LOOPBACK.test(ip));
}

/** Whether two registrations run on one machine (above). */
export function sameMachine(a: RouterRecord, b: RouterRecord): boolean {
  if (a.host !== b.host) return false;
  const x = addressesOf(a);
  const y = addressesOf(b);
  return (x.length === 0 && y.length === 0) || x.some((ip) => y.includes(ip));
}

/** The live registrations and the known ones (those whose lease expired included), in key order (by name). */
export async function readRouters(client: Etcd3): Promise<{ live: RouterRecord[]; known: RouterRecord[] }> {
  const [live, known] = await Promise.all([routerKey(''), knownRouterKey('')].map(async (p) =>
    Object.entries(await client.getAll().prefix(p).strings()).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => JSON.parse(v) as RouterRecord)));
  return { live: live!, known: known! };
}

/** The load of the machine of each of `of` (by router name): what the live routers on it own. */
export async function machineLoads(client: Etcd3, live: RouterRecord[], of: RouterRecord[]): Promise<Map<string, Load>> {
  const owners = live.filter((r) => r.role === 'owner' && r.vpool !== undefined);
  const counted = new Map<string, number>();
  await Promise.all([...new Set(owners.map((r) => r.vpool!))].map(async (vpool) => {
    counted.set(vpool, await client.getAll().prefix(vdisksPrefix(vpool)).count());
  }));
  const out = new Map<string, Load>();
  for (const r of of) {
    const load: Load = { vdisks: 0, vpools: 0 };
    for (const o of owners) {
      if (o.name !== r.name && !sameMachine(o, r)) continue;
      load.vpools++;
      load.vdisks += counted.get(o.vpool!) ?? 0;
    }
    out.set(r.name, load);
  }
  return out;
}

export interface TakerRank {
  router: RouterRecord;
  /** In the dead owner's failure domain (both known and equal). */
  sameDomain: boolean;
  load: Load;
}

/** Best taker first: another failure domain than the dead owner's, then the least loaded machine, then the name. */
export function rankTakers(ranks: TakerRank[]): TakerRank[] {
  return [...ranks].sort((a, b) => Number(a.sameDomain) - Number(b.sameDomain) || a.load.vdisks - b.load.vdisks || a.load.vpools - b.load.vpools
    || (a.router.name < b.router.name ? -1 : a.router.name > b.router.name ? 1 : 0));
}

/**
 * The followers of `vpool` that may take the dead owner's place (this router `me` among them, whatever its
 * registration says now), ranked best first.
 */
export async function rankFollowers(client: Etcd3, vpool: string, me: RouterRecord, dead: RouterRecord): Promise<TakerRank[]> {
  const { live } = await readRouters(client);
  const candidates = live.filter((r) => r.name !== me.name && r.name !== dead.name && r.role === 'follower' && r.vpool === vpool);
  candidates.push(live.find((r) => r.name === me.name) ?? me);
  const loads = await machineLoads(client, live, candidates);
  return rankTakers(candidates.map((r) => ({
    router: r, sameDomain: dead.failureDomain !== null && r.failureDomain === dead.failureDomain, load: loads.get(r.name)!,
  })));
}

export const describeLoad = (l: Load): string => `${l.vdisks} vDisk${l.vdisks === 1 ? '' : 's'} in ${l.vpools} vPool${l.vpools === 1 ? '' : 's'}`;

export interface ServerPlace {
  server: string;
  /** The live routers on the server's address. */
  routers: string[];
  /** Every router on its address has an expired lease: those routers (else empty). */
  goneWith: string[];
  /** The failure domain of its routers (live or expired) when they agree; else null (unknown). */
  failureDomain: string | null;
  /** Live routers whose registered list starts with it. */
  senders: number;
  /** Live routers whose registered list names it. */
  registeredBy: string[];
  /** Its place in the registrations (router name, then position in its list); servers no router registered after. */
  order: number;
}

/** Where each of `servers` runs, as the registrations say (above). */
export function placeServers(servers: string[], live: RouterRecord[], known: RouterRecord[]): ServerPlace[] {
  const liveNames = new Set(live.map((r) => r.name));
  const everyone = [...live, ...known.filter((r) => !liveNames.has(r.name))];
  const registered: string[] = [];
  for (const r of live) for (const s of r.dtlServer ?? []) if (!registered.includes(s)) registered.push(s);
  return servers.map((server) => {
    const ip = hostOf(server);
    const on = LOOPBACK.test(ip) ? [] : everyone.filter((r) => addressesOf(r).includes(ip));
    const domains = new Set(on.map((r) => r.failureDomain));
    const alive = on.filter((r) => liveNames.has(r.name)).map((r) => r.name);
    const at = registered.indexOf(server);
    return {
      server, routers: alive, goneWith: alive.length === 0 ? on.map((r) => r.name) : [],
      failureDomain: domains.size === 1 ? [...domains][0]! : null,
      senders: live.filter((r) => r.dtlServer?.[0] === server).length,
      registeredBy: live.filter((r) => r.dtlServer?.includes(server) === true).map((r) => r.name),
      order: at < 0 ? registered.length + servers.indexOf(server) : at,
    };
  });
}

/** Best DTL server first for an owner in failure domain `domain` (above). */
export function rankDtlServers(places: ServerPlace[], domain: string | null): ServerPlace[] {
  const where = (p: ServerPlace): number => (p.failureDomain === null ? 1 : domain !== null && p.failureDomain === domain ? 2 : 0);
  return [...places].sort((a, b) => Number(a.goneWith.length > 0) - Number(b.goneWith.length > 0) || where(a) - where(b) || a.senders - b.senders || a.order - b.order);
}

/** The servers of `servers` whose routers all lost their registry lease: server → why. */
export async function goneDtlServers(client: Etcd3, servers: string[]): Promise<Map<string, string>> {
  const { live, known } = await readRouters(client);
  const out = new Map<string, string>();
  for (const p of placeServers(servers, live, known)) {
    if (p.goneWith.length > 0) out.set(p.server, `on the address of router${p.goneWith.length === 1 ? '' : 's'} ${p.goneWith.map((n) => `'${n}'`).join(', ')}, whose registry lease has expired`);
  }
  return out;
}
