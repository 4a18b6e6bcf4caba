/**
 * A router's registration in etcd (docs/cluster.md): `/vpoolfs/routers/<name>` attached to an etcd lease the
 * router keeps alive (etcd3's keepalive, every third of the TTL), plus `/vpoolfs/known-routers/<name>`
 * without a lease, so that `router list` can show a router whose lease expired. A clean stop revokes the lease
 * and deletes both.
 *
 * - A name is registered once: a live registration of another state directory or host refuses the join
 *   (RegistryError BUSY naming it). The same state directory on the same host replaces it at once: the state
 *   lock (tools/state-lock.ts) proves that the daemon that registered it is gone (a restart after kill -9).
 * - etcd unreachable while running: the router goes on serving (no I/O depends on etcd); the keepalive retries.
 *   Once the lease is lost (etcd3 says so after twice the TTL without an answer, or etcd answers that it
 *   expired: the router was cut off or paused), the router joins again with a new lease, retried every
 *   second, and `onRejoined` runs (the owner records are checked again: ./router-session.ts).
 */
import os from 'node:os';
import type { Etcd3, Lease } from 'etcd3';
import { logger } from '../util/log.js';
import { connectRegistry } from './connect.js';
import { hostAddresses } from './placement.js';
import { registryFailure } from './diagnose.js';
import type { RegistryCredentials, RegistrySecurity } from './security.js';
import { RegistryError } from './errors.js';
import { knownRouterKey, routerKey, type RouterRecord, type RouterRole, type Waiting } from './keys.js';

const log = logger('registry');

export interface JoinOptions {
  /** etcd://HOST:PORT[,…] or etcds://… (TLS) */
  registry: string;
  /** TLS files and etcd user for the registry, or what was read from them (./security.ts). */
  security?: RegistrySecurity | RegistryCredentials;
  name: string;
  state: string;
  failureDomain?: string;
  /** The router link's HOST:PORT (other routers dial it). */
  address?: string;
  /** Where the vPool's owner reaches this router about the vDisks it delegates to it (tools/daemon/delegate-side.ts). */
  delegateAddress?: string;
  /** The management API on TCP. */
  api?: string;
  dtlServer?: string[];
  vpool?: string;
  role?: RouterRole;
  /** The lease's TTL in seconds (at least 2: etcd's minimum with its default election timeout). */
  leaseSeconds: number;
}

export class RouterRegistry {
  private lease!: Lease;
  private rec!: RouterRecord;
  private closed = false;
  /** What this router waits for (registry/takeover.ts), re-recorded by a rejoin. */
  private waiting: Waiting | null = null;
  private rejoining: Promise<void> | null = null;
  private keepaliveFailing = false;
  /**
   * performance.now() when the last keepalive that etcd answered was SENT (or the lease granted): the lease
   * cannot expire before this + its TTL. RouterSession.ackCheck reads it.
   */
  renewedAtMono = -Infinity;
  private keepaliveSentMono = -Infinity;
  private readonly rejoinListeners: Array<() => void> = [];

  private constructor(readonly client: Etcd3, private readonly opts: JoinOptions) {}

  /** Registers the router; throws RegistryError (BUSY: the name is taken; BACKEND: etcd does not answer). */
  static async join(opts: JoinOptions): Promise<RouterRegistry> {
    if (!Number.isInteger(opts.leaseSeconds) || opts.leaseSeconds < 2) throw new RegistryError('INVALID', `the registry lease must be a whole number of seconds, at least 2, got ${opts.leaseSeconds}`);
    const reg = new RouterRegistry(connectRegistry(opts.registry, opts.security), opts);
    try {
      await reg.register();
    } catch (err) {
      reg.client.close();
      // says what failed: etcd unreachable, TLS (CA, client certificate), or a refused user (./diagnose.ts)
      throw await registryFailure(opts.registry, opts.security, err);
    }
    log.info('registered in the registry', { router: opts.name, registry: opts.registry, lease: reg.rec.lease, leaseSeconds: opts.leaseSeconds, failureDomain: reg.rec.failureDomain, address: reg.rec.address });
    return reg;
  }

  get name(): string {
    return this.opts.name;
  }

  get record(): Readonly<RouterRecord> {
    return this.rec;
  }

  /** Runs after each new registration that follows a lost lease. */
  onRejoined(fn: () => void): void {
    this.rejoinListeners.push(fn);
  }

  private async register(): Promise<void> {
    const { client, opts } = this;
    const lease = client.lease(opts.leaseSeconds);
    lease.on('lost', (err) => this.lost(lease, err));
    const granting = performance.now();
    const id = await lease.grant();
    this.renewedAtMono = granting;
    const rec: RouterRecord = {
      name: opts.name, host: os.hostname(), ips: hostAddresses(), pid: process.pid, state: opts.state,
      failureDomain: opts.failureDomain ?? null, address: opts.address ?? null, api: opts.api ?? null, dtlServer: opts.dtlServer ?? null,
      ...(opts.vpool === undefined ? {} : { vpool: opts.vpool }), ...(opts.role === undefined ? {} : { role: opts.role }),
      ...(this.waiting == null ? {} : { waiting: this.waiting }),
      ...(opts.delegateAddress === undefined ? {} : { delegateAddress: opts.delegateAddress }),
      lease: String(id), leaseSeconds: opts.leaseSeconds, registeredAt: new Date().toISOString(),
    };
    const body = JSON.stringify(rec);
    const key = routerKey(opts.name);
    for (let attempt = 0; ; attempt++) {
      const res = await client.if(key, 'Create', '==', 0)
        .then(client.put(key).value(body).lease(id), client.put(knownRouterKey(opts.name)).value(body))
        .else(client.get(key))
        .commit();
      if (res.succeeded) break;
      const kv = res.responses[0].response_range.kvs[0];
      if (kv === undefined) continue; // expired between the compare and the read: try again
      const cur = JSON.parse(kv.value.toString()) as RouterRecord;
      if (cur.host !== rec.host || cur.state !== rec.state || attempt > 3) {
        await lease.revoke().catch(() => undefined);
        throw new RegistryError('BUSY', `a router named '${opts.name}' is already registered: host ${cur.host}, pid ${cur.pid}, state ${cur.state}, since ${cur.registeredAt} (its lease of ${cur.leaseSeconds} s is alive). Give this router another --router name, or start it once that one is stopped or its lease has expired`, { holder: cur });
      }
      // this state directory's own registration, left by a daemon that is gone (the state lock says so)
      log.warn('replacing the registration of a previous run of this router (same host and state directory)', { router: opts.name, previousPid: cur.pid, previousLease: cur.lease });
      await client.if(key, 'Mod', '==', kv.mod_revision).then(client.delete().key(key)).commit();
    }
    lease.on('keepaliveFailed', (err: unknown) => {
      if (this.keepaliveFailing) return;
      this.keepaliveFailing = true;
      log.warn('renewing the registry lease failed (etcd unreachable?); the router keeps serving what it owns, and retries', { router: opts.name, error: String((err as Error).message ?? err) });
    });
    lease.on('keepaliveFired', () => { this.keepaliveSentMono = performance.now(); });
    lease.on('keepaliveSucceeded', () => {
      if (lease === this.lease) this.renewedAtMono = Math.max(this.renewedAtMono, this.keepaliveSentMono);
      if (!this.keepaliveFailing) return;
      this.keepaliveFailing = false;
      log.info('the registry lease is renewed again', { router: opts.name });
    });
    this.lease = lease;
    this.rec = rec;
  }

  private lost(lease: Lease, err: unknown): void {
    if (this.closed || lease !== this.lease) return;
    log.error('the registry lease is lost (etcd unreachable for longer than the lease, or this router was paused): other routers see this one as expired and may take over what it owns; joining again', {
      router: this.opts.name, error: String((err as Error)?.message ?? err),
    });
    this.rejoining ??= this.rejoin().finally(() => { this.rejoining = null; });
  }

  private async rejoin(): Promise<void> {
    for (let failures = 0; !this.closed; failures++) {
      try {
        await this.register();
        if (this.closed) return;
        log.info('registered again in the registry', { router: this.opts.name, lease: this.rec.lease, attempts: failures + 1 });
        for (const fn of this.rejoinListeners) fn();
        return;
      } catch (err) {
        if (failures === 0) log.warn('joining the registry again failed; retried every second', { router: this.opts.name, error: String((err as Error).message ?? err) });
        await new Promise((r) => setTimeout(r, 1000).unref());
      }
    }
  }

  /**
   * Records what this router does now (owner, follower, standby) and where its router link listens: both
   * registration keys are rewritten (the live one still on the lease). A failure is logged: the registration
   * stays as it was, and a rejoin writes the new one.
   */
  async update(change: { role?: RouterRole; address?: string | null; waiting?: Waiting | null; delegateAddress?: string }): Promise<void> {
    if (change.role !== undefined) this.opts.role = change.role;
    if (change.delegateAddress !== undefined) this.opts.delegateAddress = change.delegateAddress;
    if (change.address !== undefined) this.opts.address = change.address ?? undefined;
    // kept for a rejoin's new registration
    if (change.waiting !== undefined) this.waiting = change.waiting;
    const rec: RouterRecord = {
      ...this.rec, ...(change.role === undefined ? {} : { role: change.role }), ...(change.address === undefined ? {} : { address: change.address }),
      ...(change.waiting === undefined ? {} : { waiting: change.waiting }),
      ...(change.delegateAddress === undefined ? {} : { delegateAddress: change.delegateAddress }),
    };
    try {
      await this.client.if(routerKey(this.opts.name), 'Lease', '==', this.rec.lease)
        .then(this.client.put(routerKey(this.opts.name)).value(JSON.stringify(rec)).lease(this.rec.lease), this.client.put(knownRouterKey(this.opts.name)).value(JSON.stringify(rec)))
        .commit();
      this.rec = rec;
    } catch (err) {
      log.warn('recording this router\'s role in the registry failed (etcd unreachable?)', { router: this.opts.name, ...change, error: String((err as Error).message ?? err) });
    }
  }

  /** A clean stop: the lease is revoked (the registration goes with it) and the known-router record deleted. */
  async leave(): Promise<void> {
    this.closed = true;
    try {
      await this.lease.revoke();
      await this.client.delete().key(knownRouterKey(this.opts.name));
      log.info('left the registry', { router: this.opts.name });
    } catch (err) {
      log.warn('leaving the registry failed (etcd unreachable?): the registration expires with its lease', { router: this.opts.name, error: String((err as Error).message ?? err) });
    } finally {
      this.client.close();
    }
  }

  /** The process goes away without a clean stop (the lease expires). */
  abandon(): void {
    this.closed = true;
    this.lease?.release();
    this.client.close();
  }
}
