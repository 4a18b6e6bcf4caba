/**
 * The self-fence of a delegated vDisk (docs/cluster.md, "Ownership per vDisk"): a router that serves one vDisk
 * of a vPool it does not hold (no backend claim of the vPool) lets that vDisk's backend writes through only while
 * the registry confirms, within half its lease's TTL, that its lease is alive and the vDisk's record names it
 * with its owner tag. The confirmation itself is the registry's (registry/vdisk-confirm.ts): volume/ imports
 * nothing of registry/, so it comes in as a function.
 *
 *   gate()     before every backend write of the vDisk (./fenced-store.ts): FENCED, never retried, once the
 *              vDisk is lost; when the last confirmation is older than half the TTL, or than what was left of
 *              the lease when it was asked (monotonic clock: it keeps
 *              running while the process is stopped) it confirms first, so a resumed zombie learns it lost the
 *              vDisk before it writes anything; while the registry does not answer: BACKEND (retried by the
 *              caller) — a write is never let through unconfirmed.
 *   beforeAck() before a write, discard, resize or fsync of the vDisk is acknowledged (VDiskContext.beforeAck):
 *              FENCED once the vDisk is lost; when the last confirmation is stale it confirms first — a write
 *              that reached a router just before it was stopped (SIGSTOP, a VM freeze) is otherwise acknowledged
 *              when it resumes, after the owner took the vDisk back: an acknowledged write that is in nothing
 *              the owner serves (test/cluster-netns-vdisk-zombie.test.ts). While the
 *              registry does not answer (its last confirmation failed, or this one takes over a quarter of the
 *              TTL) it lets the acknowledgement through, as before: etcd down, nobody can take the vDisk back (a
 *              delegate cut off from etcd but not from its clients stays a limit).
 *   a timer    confirms every third of the TTL, so that gate() rarely waits.
 * The same rule as the backend claim's (./claim.ts) with etcd as the witness: the router that takes the vDisk back
 * does so only after the record changed (one etcd transaction) or the lease expired, and either is seen by the
 * next confirmation. What the gate cannot stop — a PUT already on its way — the fence in the data stops
 * (../datapath/epoch-fence.ts, the owner-tag fences).
 */
import { BackendError } from '../../util/errors.js';
import { logger } from '../../util/log.js';
import { checkBeforeAck } from '../../util/stale-confirmation.js';

const log = logger('vdisk-gate');

/**
 * The registry's word: `{ validMs }` while (router, tag) still owns the vDisk under a live lease that cannot
 * expire within `validMs` of the question (its remaining TTL); `{ lost }` with why not. Throws when it cannot tell.
 */
export type ConfirmOwnership = () => Promise<{ validMs: number } | { lost: string }>;

export class VDiskGate {
  /** Monotonic ms until which the last confirmation lets writes through. */
  private validUntilMono = -Infinity;
  private fencedWhy: string | null = null;
  private confirming: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private readonly listeners: Array<(why: string) => void> = [];

  constructor(readonly vdisk: string, readonly router: string, readonly tag: number, private readonly confirmFn: ConfirmOwnership, private readonly ttlMs: number) {}

  /** Confirms once (a refusal fences, a failure throws BACKEND), then keeps confirming every third of the TTL. */
  async start(): Promise<void> {
    await this.confirm();
    if (this.fencedWhy !== null) throw this.fencedError('opening the vDisk');
    if (performance.now() >= this.validUntilMono) throw new BackendError('BACKEND', `the registry could not confirm that this router owns vDisk ${this.vdisk}`, { vdisk: this.vdisk });
    this.timer = setInterval(() => void this.confirm(), Math.max(100, Math.floor(this.ttlMs / 3))).unref();
  }

  get fenced(): string | null {
    return this.fencedWhy;
  }

  onFenced(fn: (why: string) => void): void {
    this.listeners.push(fn);
  }

  async gate(what: string): Promise<void> {
    if (this.fencedWhy !== null) throw this.fencedError(what);
    if (performance.now() >= this.validUntilMono) await this.confirm();
    if (this.fencedWhy !== null) throw this.fencedError(what);
    if (performance.now() >= this.validUntilMono) {
      throw new BackendError('BACKEND', `${what}: held back, the registry could not confirm this router's ownership of vDisk ${this.vdisk}`, { vdisk: this.vdisk, tag: this.tag });
    }
  }

  /**
   * Before an acknowledgement: null (nothing to wait for) while the last confirmation holds; otherwise a
   * confirmation, then FENCED if the vDisk was lost. A registry that does not answer lets it through (see the header).
   * The rule is util/stale-confirmation.ts's, shared with the vPool owner's (registry/router-session.ts ackCheck).
   */
  beforeAck(what: string): Promise<void> | null {
    return checkBeforeAck({
      lost: () => this.fencedWhy === null ? null : this.fencedError(`${what}: not acknowledged`),
      failing: this.failures > 0,
      validUntil: this.validUntilMono,
      confirm: () => this.confirm(),
      // a registry that does not answer within a quarter of the TTL counts as not answering: the write goes on
      waitMs: this.ttlMs / 4,
    });
  }

  /** One confirmation (single flight). */
  confirm(): Promise<void> {
    this.confirming ??= this.confirmOnce().finally(() => { this.confirming = null; });
    return this.confirming;
  }

  private async confirmOnce(): Promise<void> {
    if (this.fencedWhy !== null) return;
    const t0 = performance.now(); // before asking: what etcd says holds from the question on, not from the answer
    try {
      const r = await this.confirmFn();
      if ('lost' in r) return this.fence(r.lost);
      // half the TTL at most, and never past what is left of the lease: the router taking the vDisk back waits
      // for the record to change (seen by the next confirmation) or for the lease to expire
      this.validUntilMono = Math.max(this.validUntilMono, t0 + Math.min(this.ttlMs / 2, r.validMs));
      if (this.failures > 0) log.info('the registry confirms this router\'s ownership of the vDisk again; its backend writes go on', { vdisk: this.vdisk, tag: this.tag, failed: this.failures });
      this.failures = 0;
    } catch (err) {
      if (this.failures++ === 0) log.warn('confirming the ownership of a delegated vDisk failed (etcd unreachable?): its backend writes wait', { vdisk: this.vdisk, tag: this.tag, error: (err as Error).message });
    }
  }

  /** Fenced from outside (the registry's watch saw the record change); final. */
  fenceNow(why: string): void {
    this.fence(why);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private fence(why: string): void {
    if (this.fencedWhy !== null) return;
    this.fencedWhy = why;
    this.stop();
    log.error(`FENCED: this router lost vDisk ${this.vdisk}: ${why}. It writes nothing more of it to the backend and answers its I/O with EIO; its unshipped writes are not in what the new owner serves`, { vdisk: this.vdisk, router: this.router, tag: this.tag });
    for (const fn of this.listeners) fn(why);
  }

  private fencedError(what: string): BackendError {
    return new BackendError('FENCED', `${what}: refused, this router lost vDisk ${this.vdisk} (${this.fencedWhy})`, { vdisk: this.vdisk, tag: this.tag });
  }
}
