/**
 * The on-disk format of a SCO (Storage Container Object): written clusters packed in arrival order, each
 * in a slot of a 32-byte header followed by the 4 KiB of data. The same bytes sit in the local write cache
 * and in the backend, so a SCO is self-describing and every cluster read (local or a ranged backend read)
 * is verified on its own:
 *
 *   0  u32 magic 'VPC1'          16 u32 namespace tag (crc32 of the vDisk id)
 *   4  u32 crc32 of bytes 8..32 and the data     20 u32 SCO number
 *   8  u32 address low, 12 u32 address high      24 u32 slot index, 28 u32 reserved (0)
 *
 * A slot whose magic, checksum, namespace, SCO number, slot index or address disagrees with what the
 * cluster map expects is corrupt: the read fails with CHECKSUM, never returning wrong data.
 *
 * A SCO holds no record of discards: a slot is live only while the cluster map points at it. A discard
 * (a DISCARD record in the TLog, tlog-format.ts) unmaps clusters and leaves their slots as garbage, like
 * an overwrite. So rebuilding a TLog from its SCOs' slot headers (a damaged TLog) brings back the writes
 * but not the discards it held.
 */
import { crc32 } from 'node:zlib';
import { combineFor } from '../../../util/crc32-combine.js';
import { CLUSTER_SIZE } from '../../types.js';

export const SLOT_HEADER = 32;
export const SLOT_SIZE = SLOT_HEADER + CLUSTER_SIZE;
const MAGIC = 0x31435056; // 'VPC1' little-endian

export function namespaceTag(vdiskId: string): number {
  return crc32(vdiskId) >>> 0;
}

/** crc32(header bytes 8..32 ‖ data) from the crc32 of each (the data's computed in a FUSE reader thread). */
const withData = combineFor(CLUSTER_SIZE);

/**
 * Fills `header` (32 bytes) for `data` (4096 bytes). `dataCrc`: the crc32 of `data` when already known
 * (computed where the request was read: fuse/kernel/write-crcs.ts), combined instead of computed again.
 */
export function encodeSlotHeader(header: Buffer, tag: number, sco: number, slot: number, address: number, data: Uint8Array, dataCrc?: number): void {
  header.writeUInt32LE(MAGIC, 0);
  header.writeUInt32LE(address % 0x100000000, 8);
  header.writeUInt32LE(Math.floor(address / 0x100000000), 12);
  header.writeUInt32LE(tag, 16);
  header.writeUInt32LE(sco, 20);
  header.writeUInt32LE(slot, 24);
  header.writeUInt32LE(0, 28);
  const head = crc32(header.subarray(8, SLOT_HEADER));
  header.writeUInt32LE(dataCrc === undefined ? crc32(data, head) >>> 0 : withData(head, dataCrc), 4);
}

/**
 * Checks the slot at `buf[pos .. pos+SLOT_SIZE)`. Returns null when it is sound and matches the
 * expectation, else a short reason. `address` may be -1 when unknown (recovery scans).
 */
export function checkSlot(buf: Buffer, pos: number, tag: number, sco: number, slot: number, address: number): string | null {
  if (buf.length < pos + SLOT_SIZE) return 'short slot';
  return checkSlotParts(buf, pos, buf.subarray(pos + SLOT_HEADER, pos + SLOT_SIZE), tag, sco, slot, address);
}

export function slotAddress(buf: Buffer, pos: number): number {
  return buf.readUInt32LE(pos + 8) + buf.readUInt32LE(pos + 12) * 0x100000000;
}

export function scoName(sco: number): string {
  return sco.toString(16).padStart(8, '0');
}

/**
 * The cluster addresses of the slots of a SCO read whole (recovery, a damaged TLog). A sound slot gives
 * its address. A damaged slot whose header still names this SCO, slot and namespace gives the address it
 * claims, so reads of that cluster fail with CHECKSUM instead of returning older data; one whose header is
 * gone maps nothing (-1). Damaged slots after the last sound one are a torn tail: `count` ends before them.
 */
export function scanSlots(buf: Buffer, tag: number, sco: number): { addresses: Float64Array; count: number } {
  const total = Math.floor(buf.length / SLOT_SIZE);
  const addresses = new Float64Array(total);
  let count = 0;
  for (let i = 0; i < total; i++) {
    const pos = i * SLOT_SIZE;
    if (checkSlot(buf, pos, tag, sco, i, -1) === null) {
      addresses[i] = slotAddress(buf, pos);
      count = i + 1;
    } else if (buf.readUInt32LE(pos) === MAGIC && buf.readUInt32LE(pos + 16) === tag && buf.readUInt32LE(pos + 20) === sco && buf.readUInt32LE(pos + 24) === i) {
      addresses[i] = slotAddress(buf, pos);
    } else {
      addresses[i] = -1;
    }
  }
  return { addresses: addresses.subarray(0, count), count };
}

/**
 * The checks of a slot whose header is at `hdr[hpos .. hpos+32)` and whose 4 KiB of data is `data`: the
 * read path reads the data straight into the caller's buffer and the header into a scratch one; checkSlot
 * passes the two parts of one buffer.
 */
export function checkSlotParts(hdr: Buffer, hpos: number, data: Uint8Array, tag: number, sco: number, slot: number, address: number): string | null {
  if (hdr.length < hpos + SLOT_HEADER || data.length !== CLUSTER_SIZE) return 'short slot';
  if (hdr.readUInt32LE(hpos) !== MAGIC) return 'bad magic';
  const want = hdr.readUInt32LE(hpos + 4);
  const got = crc32(data, crc32(hdr.subarray(hpos + 8, hpos + SLOT_HEADER))) >>> 0;
  if (want !== got) return 'checksum mismatch';
  if (hdr.readUInt32LE(hpos + 16) !== tag) return 'wrong namespace';
  if (hdr.readUInt32LE(hpos + 20) !== sco) return 'wrong SCO';
  if (hdr.readUInt32LE(hpos + 24) !== slot) return 'wrong slot';
  if (address >= 0 && slotAddress(hdr, hpos) !== address) return 'wrong address';
  return null;
}
