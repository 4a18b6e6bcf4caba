/**
 * The child of the crash test: opens the vPool, then runs seeded operations on `/d` from op `first` on
 * (writes of pattern(seed, n) at derived offsets, now and then a resize or a sync) and prints `ack <n>`
 * once each has resolved. The parent SIGKILLs it at a random moment.
 * Usage: node crash-writer.js STATE BACKEND SEED FIRST
 */
import { openVPool } from '../../volume/vpool.js';
import { crashOp } from './crash-ops.js';

const [state, backend, seedArg, firstArg] = process.argv.slice(2);
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
  process.stdout.write(`ack ${n}\n`);
}
