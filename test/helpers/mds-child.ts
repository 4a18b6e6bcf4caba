/**
 * Crash-test child for test/mds.test.ts: `node dist/test/helpers/mds-child.js <dir> <keysPerBatch> <acks>`.
 *
 * Opens the lmdb store in <dir>, continues from the generation found there, and commits numbered
 * batches forever until killed. Batch `g` writes, atomically:
 *   - `b/00`..`b/NN`: 4-byte big-endian g, then a filler of random length (0..6000) of byte g & 0xff,
 *     so values span pages and a torn value would show;
 *   - `log/<g>` and deletes `log/<g - LOG_KEEP>`: after batch g exactly log/(g-LOG_KEEP+1)..log/g exist.
 * Prints `ready <gen>` once open, and writes `ack <g>` to the ack log <acks> after each commit resolves
 * (not to stdout: a kill loses what a pipe had not taken yet, see ack-log.ts).
 */
import { pathToFileURL } from 'node:url';
import { LmdbMetadataStore } from '../../mds/lmdb-store.js';
import type { MetadataOp } from '../../mds/types.js';
import { openAckLog } from './ack-log.js';

export const LOG_KEEP = 5;

export function batchKey(i: number): string {
  return `b/${String(i).padStart(2, '0')}`;
}

export function logKey(gen: number): string {
  return `log/${String(gen).padStart(10, '0')}`;
}

export function batchValue(gen: number, filler: number): Buffer {
  const value = Buffer.alloc(4 + filler, gen & 0xff);
  value.writeUInt32BE(gen, 0);
  return value;
}

async function main(): Promise<void> {
  const dir = process.argv[2];
  const keysPerBatch = Number(process.argv[3]);
  const acks = process.argv[4];
  if (!dir || !(keysPerBatch > 0) || !acks) throw new Error('usage: mds-child <dir> <keysPerBatch> <acks>');
  const ack = openAckLog(acks);
  const store = LmdbMetadataStore.open(dir);
  const current = store.get(batchKey(0));
  let gen = current ? current.readUInt32BE(0) : 0;
  process.stdout.write(`ready ${gen}\n`);
  for (;;) {
    gen++;
    const ops: MetadataOp[] = [];
    for (let i = 0; i < keysPerBatch; i++) {
      ops.push({ key: batchKey(i), value: batchValue(gen, Math.floor(Math.random() * 6001)) });
    }
    ops.push({ key: logKey(gen), value: batchValue(gen, 0) });
    if (gen > LOG_KEEP) ops.push({ key: logKey(gen - LOG_KEEP), value: null });
    await store.commit(ops);
    ack(`ack ${gen}`);
  }
}

// Only run when executed directly, so the test can import the key helpers.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`mds-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
