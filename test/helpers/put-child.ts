/**
 * The child process of the BlobStore crash test (test/backend-conformance.test.ts), plus the payload
 * format both sides share.
 *
 * Run as `node dist/test/helpers/put-child.js <backend-url> <first-version> <acks>`: it opens the store and
 * loops forever, with CRASH_WORKERS workers each overwriting its own keys with ever newer versions; after
 * each put resolves it writes `ack <keyIndex> <version>` to the ack log <acks> (ack-log.ts), and prints
 * `acked` on stdout after the first. The parent SIGKILLs it at a random moment and checks that every
 * object reads back whole, at its last acknowledged version or a later one.
 *
 * A payload is self-describing: a 12-byte header (magic, key index, version) and then bytes computed from
 * key index and version, with a size that changes from version to version, so a torn write is detected.
 * Every other version goes through putFile when the store has it (file://), from a file beside the ack log.
 */
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { openBlobStore } from '../../volume/backend/index.js';
import { openAckLog } from './ack-log.js';

export const CRASH_KEYS = 8;
export const CRASH_WORKERS = 4;
const SIZES = [12, 4096 + 5, 65_536, 1024 * 1024 + 7];
const MAGIC = 0x56504653; // "VPFS"

export function crashKey(index: number): string {
  return `crash/${index % 2 === 0 ? 'even' : 'odd'}/obj${index}`;
}

export function crashPayload(index: number, version: number): Buffer {
  const buf = Buffer.alloc(SIZES[(index + version) % SIZES.length]!);
  buf.writeUInt32BE(MAGIC, 0);
  buf.writeUInt32BE(index, 4);
  buf.writeUInt32BE(version, 8);
  for (let j = 12; j < buf.length; j++) buf[j] = (j * 31 + version * 17 + index) & 0xff;
  return buf;
}

/** The key index and version in a payload's header, or null when the header is not there. */
export function payloadHeader(buf: Buffer): { index: number; version: number } | null {
  if (buf.length < 12 || buf.readUInt32BE(0) !== MAGIC) return null;
  return { index: buf.readUInt32BE(4), version: buf.readUInt32BE(8) };
}

async function main(): Promise<void> {
  const [url, first, acks] = process.argv.slice(2);
  if (url === undefined || first === undefined || acks === undefined) throw new Error('usage: put-child <backend-url> <first-version> <acks>');
  const ack = openAckLog(acks);
  let told = false;
  const store = await openBlobStore(url);
  let version = Number(first);
  // Never outlive a parent that died before killing us.
  setTimeout(() => process.exit(3), 60_000).unref();
  process.stdout.write('ready\n');
  const worker = async (w: number): Promise<never> => {
    for (;;) {
      for (let i = w; i < CRASH_KEYS; i += CRASH_WORKERS) {
        const v = version++;
        if (v % 2 === 1 && store.putFile !== undefined) {
          // every other version through putFile (the uploader's path on a file:// store), from a local file
          // written whole first (the uploader's closed SCOs are whole and never change)
          const src = `${acks}.src-${w}`;
          fs.writeFileSync(src, crashPayload(i, v));
          await store.putFile(crashKey(i), src);
        } else {
          await store.put(crashKey(i), crashPayload(i, v));
        }
        ack(`ack ${i} ${v}`);
        if (!told) process.stdout.write('acked\n');
        told = true;
      }
    }
  };
  await Promise.all(Array.from({ length: CRASH_WORKERS }, (_, w) => worker(w)));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
