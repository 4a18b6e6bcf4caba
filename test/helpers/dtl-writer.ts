/**
 * The child of the DTL host-loss test: opens the vPool on its own state directory with a DTL (server,
 * mode), runs the seeded operations of crash-ops.ts on `/d` from op FIRST on, and writes `ack <n>` once
 * each has resolved (for a sync op, once the fsync returned) to the ack log ACKS (ack-log.ts: a kill must not
 * lose the report), with every change of the DTL state in between. `ready` goes to stdout. The parent
 * SIGKILLs it at a random moment, then deletes its state directory (the host is lost).
 * Usage: node dtl-writer.js STATE BACKEND DTL_SERVER MODE ROUTER SEED FIRST ACKS
 */
import { dtlProvider } from '../../dtl-client/provider.js';
import type { DtlMode } from '../../volume/types.js';
import { openVPool } from '../../volume/vpool.js';
import { openAckLog } from './ack-log.js';
import { runCrashOps } from './crash-ops.js';

const [state, backend, server, mode, router, seedArg, firstArg, acks] = process.argv.slice(2);
const ack = openAckLog(acks);
const seed = Number(seedArg);
const dtl = dtlProvider({ servers: [server], defaultMode: mode as DtlMode, router, retryMs: 200 });
const pool = await openVPool({ name: 'hl', stateDir: state, backendUrl: `file://${backend}`, routerId: router, scoClusters: 16, tlogScos: 2, scoMaxAgeMs: 100, dtl });
try {
  pool.stat('/d');
} catch {
  await pool.createFile('/d', 0o644, 0, 0, 0);
  // the tree goes to the backend in the background: a host lost before that has no /d to rebuild (the DTL
  // protects a vDisk's writes, not its creation), which is not what this test is about
  await pool.syncToBackend();
}
const v = pool.vdisk('/d');
// wait until the DTL is attached: the test is about what the DTL keeps, not about a degraded start
while (v.info().dtl.state !== 'ok_sync') await new Promise((r) => setTimeout(r, 10));
process.stdout.write('ready\n');
// every change of the DTL state, for the parent (a write acknowledged while degraded is not protected)
let dtlState = 'ok_sync';
setInterval(() => {
  const now = v.info().dtl.state;
  if (now !== dtlState) ack(`state ${(dtlState = now)}`);
}, 5).unref();
await runCrashOps(v, seed, Number(firstArg), ack);
