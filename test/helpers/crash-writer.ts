/**
 * The child of the crash test: opens the vPool, then runs seeded operations on `/d` from op `first` on
 * (writes of pattern(seed, n) at derived offsets, now and then a resize or a sync) and writes `ack <n>`
 * to the ack log ACKS once each has resolved (ack-log.ts: a kill must not lose the report); `ready` goes to
 * stdout. The parent SIGKILLs it at a random moment.
 * Usage: node crash-writer.js STATE BACKEND SEED FIRST ACKS
 */
import { openVPool } from '../../volume/vpool.js';
import { openAckLog } from './ack-log.js';
import { runCrashOps } from './crash-ops.js';

const [state, backend, seedArg, firstArg, acks] = process.argv.slice(2);
const ack = openAckLog(acks);
const seed = Number(seedArg);
const pool = await openVPool({ name: 'crash', stateDir: state, backendUrl: `file://${backend}`, scoClusters: 16, tlogScos: 2, scoMaxAgeMs: 100 });
try {
  pool.stat('/d');
} catch {
  await pool.createFile('/d', 0o644, 0, 0, 0);
}
const v = pool.vdisk('/d');
process.stdout.write('ready\n');
await runCrashOps(v, seed, Number(firstArg), ack);
