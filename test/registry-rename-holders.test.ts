/**
 * A rename on the vPool owner's own mount, followed by its router link's per-handle paths (router-link/server.ts
 * holdersByPath, told the router's renames: LinkServerOptions.renames), with real etcd, daemons, mounts and TCP:
 * rb (a follower) holds /vm open for writing, as a migrating VM's destination does; ra (the owner) holds it too,
 * renames it to /vm2 on its own mount, then lets go. ra counts rb's handle under /vm2, so the automatic move per
 * vDisk (tools/daemon/vdisk-automove.ts) hands /vm2 to rb. Counted under its old path, /vm2 would have no holder
 * and nothing would move (what this test saw before the link server followed such renames).
 */
import { holdOpen, letGo } from './helpers/hold-open.js';
import { fuseTest, logEntries, ok, q, startMount } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { until } from './helpers/until.js';

const test = fuseTest();

test('the owner renames a vDisk a follower holds open on its own mount: its count follows, the automatic move hands /vm2 to the follower', async (t) => {
  const c = await cluster(t);
  const cfg = { autoMove: true, autoMoveAfterMs: 1000, autoMoveHoldMs: 1000, registryLeaseSeconds: 5 };
  const a = await startMount(t, c.router('ra', [], cfg));
  await ok(t, `truncate -s 16M ${q(a.p('vm'))}`);
  const b = await startMount(t, c.router('rb', [], cfg));
  // ra's own open first: while ra holds /vm, nothing moves
  const onA = await holdOpen(a.p('vm'), 'rw');
  t.teardown(() => letGo(onA));
  const onB = await holdOpen(b.p('vm'), 'rw');
  t.teardown(() => letGo(onB));
  await ok(t, `mv ${q(a.p('vm'))} ${q(a.p('vm2'))}`);
  await letGo(onA);
  await until('ra asks for the move of /vm2 to rb (the only router holding it)', () => logEntries(a.log, /^MOVE: asked for an automatic move of vDisk \/vm2 to router 'rb'/).length === 1);
  await until('ra says /vm2 moved', () => logEntries(a.log, /^MOVE: vDisk \/vm2 is served by router 'rb' now/).length === 1);
  t.is(logEntries(a.log, /^MOVE: .*vDisk \/vm[ :]/).length, 0, 'nothing asked about the old path');
  await letGo(onB);
  t.is(await b.stop(), 0);
  t.is(await a.stop(), 0);
});
