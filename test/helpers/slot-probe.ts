/**
 * What the corruption and read-path tests look at from outside the volume layer: the cluster address a slot
 * of a SCO file holds (read before damaging it), and what the daemon logged at warn or above.
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import { Writable } from 'node:stream';
import winston from 'winston';
import { rootLogger } from '../../util/log.js';
import { SLOT_SIZE } from '../../volume/datapath/formats/sco-format.js';

/** The cluster address slot `slot` of SCO file `file` holds (from its header). */
export function slotAddress(file: string, slot: number): number {
  const b = Buffer.alloc(16);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, b, 0, 16, slot * SLOT_SIZE);
  } finally {
    fs.closeSync(fd);
  }
  return b.readUInt32LE(8) + b.readUInt32LE(12) * 2 ** 32;
}

/** Everything logged at warn or above while the test runs. */
export function captureLog(t: ExecutionContext): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  const transport = new winston.transports.Stream({
    stream: new Writable({ objectMode: true, write(info, _enc, cb) { lines.push(info as Record<string, unknown>); cb(); } }),
  });
  rootLogger.add(transport);
  t.teardown(() => { rootLogger.remove(transport); });
  return lines;
}

/** The error code a read (or any call) settles with, or null when it succeeded. */
export async function codeOf(p: Promise<unknown>): Promise<string | null> {
  try {
    await p;
    return null;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}
