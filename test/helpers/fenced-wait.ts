/**
 * A resumed or reconnected former owner learns it lost the vPool two ways, in either order: its registry session
 * reads the new owner (OWNERSHIP LOST) and something refuses it (FENCED: its session, its backend claim, or a DTL
 * server a new owner's recovery fenced). Waits for both, at most 60 s; false (the test failed, saying which was
 * missing) past that.
 */
import type { ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { logEntries } from './mount.js';

export async function fencedAndLost(t: ExecutionContext, router: { readonly log: string; readonly name?: string }, newOwner: string): Promise<boolean> {
  const lost = new RegExp(`^OWNERSHIP LOST: vPool 'pool' is now owned by router '${newOwner}'`);
  const seen = () => ({ fenced: logEntries(router.log, /^FENCED/).length > 0, lost: logEntries(router.log, lost).length > 0 });
  const deadline = Date.now() + 60_000;
  while (!(seen().fenced && seen().lost)) {
    if (Date.now() > deadline) {
      t.fail(`the former owner was not fenced (${JSON.stringify(seen())}) within 60 s:\n${router.log.slice(-4000)}`);
      return false;
    }
    await sleep(100);
  }
  return true;
}
