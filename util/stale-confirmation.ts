/**
 * The check before an acknowledgement that a router still holds what it serves — the vPool as its owner
 * (registry/router-session.ts ackCheck) or one delegated vDisk (volume/claim/vdisk-gate.ts beforeAck), one rule:
 *   - lost already: the acknowledgement is refused (the caller's error, FENCED);
 *   - the registry does not answer (the last confirmation failed): let through — etcd down, nobody can take
 *     anything over (a router cut off from etcd but not from its clients stays a limit, docs/cluster.md);
 *   - the last confirmation still holds (`validUntil`, within half the lease): nothing to wait for;
 *   - otherwise one confirmation first, waited for at most `waitMs` (a quarter of the lease: longer counts as
 *     not answering, the acknowledgement goes on), then refused if it found the thing lost. A router paused
 *     (SIGSTOP, a VM freeze) past its lease and resumed so learns it lost it before acknowledging the writes
 *     its clients sent meanwhile.
 * `confirm` is the caller's single flight: acknowledgements asking at once share one confirmation.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface AckConfirmation {
  /** The error refusing the acknowledgement once the thing is lost (asked before and after confirming), else null. */
  lost(): Error | null;
  /** The last confirmation failed (the registry does not answer). */
  failing: boolean;
  /** performance.now() until which the last confirmation holds (-Infinity: none). */
  validUntil: number;
  /** One confirmation; settles when it is over (it records its result itself: `lost()` says it). */
  confirm(): Promise<void>;
  /** How long the acknowledgement waits for the confirmation at the most. */
  waitMs: number;
}

/** null when nothing needs waiting for; else a promise that rejects with `lost()` if the thing is lost. */
export function checkBeforeAck(c: AckConfirmation, now: number = performance.now()): Promise<void> | null {
  const lost = c.lost();
  if (lost !== null) return Promise.reject(lost);
  if (c.failing || now < c.validUntil) return null;
  return (async () => {
    await Promise.race([c.confirm(), sleep(c.waitMs, undefined, { ref: false })]);
    const after = c.lost();
    if (after !== null) throw after;
  })();
}
