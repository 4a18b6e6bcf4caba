/**
 * Which key each encrypted object of a file:// backend is under, read from its header: what the key rotation
 * tests (fuse-rekey, rekey-model) check once a rotation is done.
 */
import fs from 'node:fs';
import path from 'node:path';
import { HEADER_SIZE, parseHeader } from '../../volume/backend/crypto-format.js';

/** `files` (paths under `dir`) whose header does not name key id `keyIdHex`, each with what it names instead. */
export function objectsNotUnder(dir: string, files: string[], keyIdHex: string): string[] {
  const wrong: string[] = [];
  for (const f of files) {
    const fd = fs.openSync(path.join(dir, f), 'r');
    const raw = Buffer.alloc(HEADER_SIZE);
    try {
      fs.readSync(fd, raw, 0, HEADER_SIZE, 0);
    } finally {
      fs.closeSync(fd);
    }
    const h = parseHeader(raw);
    if (typeof h !== 'object' || h.keyId.toString('hex') !== keyIdHex) wrong.push(`${f}: ${typeof h === 'object' ? `key id ${h.keyId.toString('hex')}` : h}`);
  }
  return wrong;
}
