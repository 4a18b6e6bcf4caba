/**
 * The writer child of the power-cut model test: opens a vDisk on a real mount (plain or O_DIRECT), fdatasyncs
 * once (the vDisk's creation and size are then on the disk: the model's starting point), prints `ready`, then
 * runs PcOps(seed) and logs each acknowledgement and each completed fsync to the ack log (powercut-ops.ts has the
 * line format; ack-log.ts why it is a file written with one write(2) a line).
 *
 * On the first error: mode `stop` exits; mode `probe` tries 20 more ops, each followed by an extra fdatasync,
 * logging what each returned (the daemon is still running after the cut: none may succeed), then exits.
 * Usage: node powercut-writer.js FILE SEED direct|plain stop|probe ACKS
 */
import fs from 'node:fs';
import { openAckLog } from './ack-log.js';
import { PcOps } from './powercut-ops.js';

const [file, seedArg, io, mode, acks] = process.argv.slice(2);
const ack = openAckLog(acks);
const flags = fs.constants.O_RDWR | (io === 'direct' ? fs.constants.O_DIRECT : 0);
const fd = fs.openSync(file, flags);
fs.fdatasyncSync(fd);
process.stdout.write('ready\n');

const code = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? 'UNKNOWN';
const ops = new PcOps(Number(seedArg));
let probes = -1;
for (;;) {
  const n = ops.n;
  const op = ops.next();
  try {
    if (op.kind === 'write') {
      let done = 0;
      while (done < op.data.length) done += fs.writeSync(fd, op.data, done, op.data.length - done, op.offset + done);
      ack(`w ${n}`);
    } else {
      fs.fdatasyncSync(fd);
      ack(`s ${n}`);
    }
  } catch (err) {
    ack(`e ${n} ${code(err)}`);
    if (mode !== 'probe') process.exit(0);
    if (probes < 0) probes = 0;
  }
  if (probes >= 0) {
    try {
      fs.fdatasyncSync(fd);
      ack(`x ${n}`);
    } catch (err) {
      ack(`xe ${n} ${code(err)}`);
    }
    if (++probes >= 20) process.exit(0);
  }
}
