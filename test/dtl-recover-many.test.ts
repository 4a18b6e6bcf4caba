/**
 * A takeover after a host loss, with several vDisks and a black-holed DTL server first in the list (issue 15):
 * a child (helpers/dtl-many-writer.ts) writes round robin to K vDisks in sync mode, nothing shipped, and is
 * SIGKILLed; its state directory goes (the host is lost). The vPool is opened on another router whose DTL
 * servers are [a dead address, the live server]: the dead one is an address on a Linux bridge of the test
 * (helpers/netns.ts) that no interface holds — a connection to it gets no answer at all, as a host whose
 * network was cut. Every vDisk must come back with every write acknowledged (sync mode); the dead server is
 * asked once for the whole recovery, not once per vDisk (recover.ts Reachability: before it, each vDisk
 * waited the DTL client's timeout for it, 5 s a vDisk). The time of the open is printed, never asserted.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DtlClient } from '../dtl-client/client.js';
import { dtlProvider } from '../dtl-client/provider.js';
import { recoveryAttempts } from '../dtl-client/recover.js';
import { openVPool } from '../volume/vpool.js';
import { runUntilKilled } from './helpers/ack-log.js';
import { startDtlServer } from './helpers/dtl-server.js';
import { MANY_CLUSTERS, manyOp } from './helpers/many-op.js';
import { bridgeForTest } from './helpers/netns.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'dtl-many-writer.js');
const K = Number(process.env.VPOOLFS_RECOVER_VDISKS ?? 6);

test(`host lost with ${K} vDisks in sync mode, the first DTL server black-holed: every acknowledged write is recovered, the dead server asked once`, async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-recover-many-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const backend = path.join(root, 'backend');
  const srv = await startDtlServer(t, path.join(root, 'dtl'));
  const bridge = await bridgeForTest(t);
  const dead = `${bridge.hostIp.replace(/\.1$/, '.250')}:${srv.address.split(':').pop()}`;

  const stateA = path.join(root, 'state-a');
  const { lines, stderr } = await runUntilKilled(child, [stateA, backend, srv.address, String(K)], path.join(root, 'acks'), 400);
  fs.rmSync(stateA, { recursive: true, force: true }); // the host is lost
  t.deepEqual(lines.filter((l) => l.startsWith('degraded')), [], 'the DTL stayed in sync while the writer ran');
  const acked = lines.filter((l) => l.startsWith('ack ')).map((l) => Number(l.slice(4)));
  const last = acked.length === 0 ? -1 : acked[acked.length - 1]!;
  t.true(last >= 2 * K, `the writer got writes acknowledged on every vDisk (last ack ${last}); ${stderr.slice(-2000)}`);
  // what must be there: per vDisk and cluster, the last acknowledged write; op last+1 (in flight) may be there too
  const expect = new Map<string, Buffer>();
  for (let n = 0; n <= last; n++) {
    const op = manyOp(n, K);
    expect.set(`${op.vdisk}/${op.address}`, op.data);
  }
  const inFlight = manyOp(last + 1, K);
  const probe = new DtlClient({ servers: [srv.address] });
  let inDtl = 0;
  for (const id of fs.readdirSync(path.join(root, 'dtl', 'vd'))) inDtl += (await probe.getScoRange(id)).entries;
  probe.close();
  t.true(inDtl > K, `the DTL held the lost writes (${inDtl} entries)`);

  const before = recoveryAttempts.get(dead) ?? 0;
  const dtl = dtlProvider({ servers: [dead, srv.address], defaultMode: 'sync', router: 'router-c', retryMs: 200, timeoutMs: 5000 });
  const t0 = Date.now();
  // the lost router's backend claim is still live: taken with force, as an operator (or a takeover) does
  const pool = await openVPool({ name: 'many', stateDir: path.join(root, 'state-c'), backendUrl: `file://${backend}`, routerId: 'router-c', scoClusters: 4096, tlogScos: 2, dtl, force: true });
  const openMs = Date.now() - t0;
  try {
    const asked = (recoveryAttempts.get(dead) ?? 0) - before;
    t.log(`${K} vDisks, ${last + 1} writes acknowledged, ${inDtl} DTL entries: the vPool opened (DTL recovery of every vDisk) in ${openMs} ms; the black-holed server was asked ${asked} time(s)`);
    t.is(asked, 1, 'the black-holed server is asked once for the whole recovery, not once per vDisk');
    const bad: string[] = [];
    for (let i = 0; i < K; i++) {
      const v = pool.vdisk(`/d${i}`);
      const all = await v.read(0, MANY_CLUSTERS * 4096);
      for (let a = 0; a < MANY_CLUSTERS; a++) {
        const got = all.subarray(a * 4096, a * 4096 + 4096);
        const want = expect.get(`${i}/${a}`) ?? Buffer.alloc(4096);
        const inflightHere = inFlight.vdisk === i && inFlight.address === a && got.equals(inFlight.data);
        if (!got.equals(want) && !inflightHere) bad.push(`/d${i} cluster ${a}`);
      }
    }
    t.deepEqual(bad, [], `acknowledged writes lost (last ack ${last})`);
  } finally {
    await pool.close();
  }
});
