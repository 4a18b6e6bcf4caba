/**
 * The whole-vPool zombie's acknowledgements (issue 15's "Zombie" proof; the per-vDisk twin is
 * cluster-netns-vdisk-zombie.test.ts): three routers each in its own network namespace (helpers/three-routers.ts),
 * a writer on the owner ra's mount (sync DTL), SIGSTOP ra, rb or rc takes the vPool over (helpers/three-routers.ts
 * takeoverAfter: every write ra acknowledged before is there), SIGCONT ra: ra is fenced. A write whose
 * acknowledgement reaches the writer after the SIGCONT must be in what the new owner serves (ra made it durable
 * before the SIGSTOP and only its reply was late); a write ra accepted after it resumed — into its write cache and
 * its DTL, before it learnt it lost the vPool — and acknowledged is in nothing the new owner serves.
 *
 * Found failing (2026-12-05): ra acknowledged the writes its writer sent after the SIGCONT (5 in that run) until
 * its registry session's next check (every third of the lease) logged OWNERSHIP LOST and fenced the claim; those
 * writes were lost. Now the owner's vDisks ask the session before acknowledging (registry/router-session.ts
 * ackCheck, via VDiskContext.beforeAck): a stale confirmation is checked first, and the write answers EIO.
 */
import { fuseTest } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { resumeUntilFenced, threeRouters, takeoverAfter } from './helpers/three-routers.js';
import { explainLogs } from './helpers/vdisk-cluster.js';

const test = fuseTest();
const bridge = useBridge();

test('SIGSTOP of the vPool\'s owner under its writer, a follower takes over, SIGCONT: every write the resumed owner acknowledges is in what the new owner serves', async (t) => {
  const r = await threeRouters(t, bridge);
  const { a } = r;
  t.teardown(() => { if (a.alive) process.kill(a.pid, 'SIGCONT'); });
  const k = await takeoverAfter(t, r, 'SIGSTOP', async () => { process.kill(a.pid, 'SIGSTOP'); });
  const before = k.w.acked.length; // ra is stopped: every ack printed by now was given before the SIGSTOP
  const { late, lost } = await resumeUntilFenced(t, a, 'ra', k.w, before, k.taker);
  t.log(`ra's writer: ${late.length} writes acknowledged after SIGCONT (${late.join(' ')}), ${lost.length} of them not in what the new owner serves; ${k.w.stderr.trim() || 'no error'}`);
  t.deepEqual(lost, [], 'writes the resumed ra acknowledged that are not in what the new owner serves');
  explainLogs(t, { ra: a, rb: r.b, rc: r.c });
  t.is(await k.other.stop(), 0);
  t.is(await k.taker.stop(), 0);
  await a.kill9();
});
