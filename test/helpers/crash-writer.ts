/**
 * The child of the crash test: opens the vPool, then runs seeded operations on `/d` from op `first` on
 * (writes of pattern(seed, n) at derived offsets, now and then a resize or a sync) and writes `ack <n>`
 * to the ack log ACKS once each has resolved (ack-log.ts: a kill must not lose the report); `ready` goes to
 * stdout. The parent SIGKILLs it at a random moment.
 * Usage: node crash-writer.js STATE BACKEND SEED FIRST ACKS
 */
import { openVPool } from '../../volume/vpool.js';
import { openAckLog } from './ack-log.js';
import { crashOp } from './crash-ops.js';

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
for (let n = Number(firstArg); ; n++) {
  const op = crashOp(seed, n);
  if (op.kind === 'write') await v.write(op.offset, op.data);
  else if (op.kind === 'resize') await v.resize(op.size);
  else await v.sync();
  ack(`ack ${n}`);
}
