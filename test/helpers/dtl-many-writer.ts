/**
 * The child of test/dtl-recover-many.test.ts: opens the vPool on its own state directory with a DTL in sync
 * mode, creates vDisks /d0…/d(K-1) (their tree shipped to the backend), waits until each one's DTL is in sync,
 * writes `ready` to stdout, then writes one cluster after the other, round robin over the vDisks (op n: the
 * cluster manyOp(n, K) says), and appends `ack <n>` to the ack log once each write resolved. Nothing is shipped
 * (SCOs never full, never old enough): every write lives only in the write cache and the DTL when the parent
 * SIGKILLs it. Usage: node dtl-many-writer.js STATE BACKEND DTL_SERVER K ACKS
 */
import { dtlProvider } from '../../dtl-client/provider.js';
import { openVPool } from '../../volume/vpool.js';
import { openAckLog } from './ack-log.js';
import { MANY_CLUSTERS, manyOp } from './many-op.js';

const [state, backend, server, kArg, acks] = process.argv.slice(2);
const ack = openAckLog(acks);
const k = Number(kArg);
const dtl = dtlProvider({ servers: [server], defaultMode: 'sync', router: 'router-a', retryMs: 200 });
const pool = await openVPool({ name: 'many', stateDir: state, backendUrl: `file://${backend}`, routerId: 'router-a', scoClusters: 4096, tlogScos: 2, scoMaxAgeMs: 3_600_000, dtl });
for (let i = 0; i < k; i++) await pool.createFile(`/d${i}`, 0o644, 0, 0, MANY_CLUSTERS * 4096);
// the tree goes to the backend first: the DTL protects a vDisk's writes, not its creation
await pool.syncToBackend();
const vdisks = Array.from({ length: k }, (_, i) => pool.vdisk(`/d${i}`));
for (const v of vdisks) while (v.info().dtl.state !== 'ok_sync') await new Promise((r) => setTimeout(r, 10));
process.stdout.write('ready\n');
for (let n = 0; ; n++) {
  const op = manyOp(n, k);
  await vdisks[op.vdisk].write(op.address * 4096, op.data);
  if (vdisks[op.vdisk].info().dtl.state !== 'ok_sync') ack(`degraded ${n}`);
  ack(`ack ${n}`);
}
