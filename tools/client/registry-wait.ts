/**
 * The wait of the registry verbs (`takeover --force`, `move`): after writing their request to etcd they poll
 * the registry until what they asked for has happened. `check` reads the registry and returns the answer once
 * there is one (any value but undefined), or throws when the request can no longer succeed (refused, its owner
 * gone); once `waitMs` have passed since `since` without an answer, the wait ends with `late()`'s error. The
 * request itself stays in the registry: the error says so where it matters.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface RegistryWait {
  /** How long to wait for an answer, in ms. */
  waitMs: number;
  /** The start of the wait (Date.now()): a verb that waits twice counts both from its request. */
  since: number;
  /** Between two reads of the registry, in ms. */
  everyMs: number;
  /** The error once waitMs have passed. */
  late: () => Error;
}

export async function waitForRegistry<T>(check: () => Promise<T | undefined>, w: RegistryWait): Promise<T> {
  for (;;) {
    const answer = await check();
    if (answer !== undefined) return answer;
    if (Date.now() - w.since > w.waitMs) throw w.late();
    await sleep(w.everyMs);
  }
}
