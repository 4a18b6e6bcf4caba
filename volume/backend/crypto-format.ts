/**
 * The on-backend format of an encrypted object (format 1; docs/encryption.md explains the choices):
 *
 *   header, 64 bytes:
 *     0  4  magic "VPE1"          4  1  format version (1)     5  1  algorithm (1 = AES-256-GCM, HKDF-SHA256)
 *     6  2  zero                  8  8  key id                 16 16 salt (random for every put)
 *     32 8  plaintext length      40 4  chunk size C           44 4  zero
 *     48 16 header tag: GCM over no data with the header's first 48 bytes as AAD, nonce FF…FF
 *   then chunk i = 0 … n-1 (n = ceil(length / C), at least 1): ciphertext of plaintext[i·C, (i+1)·C) followed
 *   by its 16-byte tag; nonce = i as a 96-bit big-endian number; AAD = the header's first 48 bytes.
 *
 * Each object has its own key: HKDF-SHA256(master key, salt, "vpoolfs object v1\0" + SHA-256(object key)). So nonces
 * never repeat under one key (one salt per put), an object moved to another key does not decrypt, and a
 * range of plaintext maps to a range of chunks (ranged GETs stay ranged). The key id is the first 8 bytes
 * of HMAC-SHA256(master key, "vpoolfs key id v1"): it names the key without revealing it.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';

export const HEADER_SIZE = 64;
export const TAG_SIZE = 16;
/** 16 slots of 4128 bytes (volume/datapath/formats/sco-format.ts): a read-cache piece (32 slots) is exactly 2 chunks. */
export const DEFAULT_CHUNK = 16 * 4128;
const MAGIC = Buffer.from('VPE1', 'latin1');
const AUTH_LEN = 48;
const HEADER_NONCE = Buffer.alloc(12, 0xff);

export interface Header {
  keyId: Buffer;
  salt: Buffer;
  length: number;
  chunk: number;
  /** The raw 64 bytes (its first 48 are every tag's AAD). */
  raw: Buffer;
}

/** Why a header could not be used: not our format, or our format but unreadable. */
export type HeaderProblem = 'NOT_ENCRYPTED' | 'DAMAGED';

export function keyIdOf(master: Buffer): Buffer {
  return createHmac('sha256', master).update('vpoolfs key id v1').digest().subarray(0, 8);
}

export function objectKey(master: Buffer, salt: Buffer, key: string): Buffer {
  // HKDF's info is limited to 1024 bytes and keys may be as long: the key goes in as its SHA-256
  const info = Buffer.concat([Buffer.from('vpoolfs object v1\0'), createHash('sha256').update(key).digest()]);
  return Buffer.from(hkdfSync('sha256', master, salt, info, 32));
}

export function chunkCount(length: number, chunk: number): number {
  return Math.max(1, Math.ceil(length / chunk));
}

/** Stored size of an object of `length` plaintext bytes. */
export function storedSize(length: number, chunk: number): number {
  return HEADER_SIZE + length + chunkCount(length, chunk) * TAG_SIZE;
}

/** Offset of chunk `i` in the stored object. */
export function chunkOffset(i: number, chunk: number): number {
  return HEADER_SIZE + i * (chunk + TAG_SIZE);
}

function nonce(i: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32BE(Math.floor(i / 2 ** 32), 4);
  n.writeUInt32BE(i % 2 ** 32, 8);
  return n;
}

function headerTag(okey: Buffer, aad: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', okey, HEADER_NONCE);
  c.setAAD(aad);
  c.final();
  return c.getAuthTag();
}

/** Encrypts `data` stored under `key` into a new object (fresh salt). */
export function encryptObject(master: Buffer, keyId: Buffer, key: string, data: Uint8Array, chunk = DEFAULT_CHUNK): Buffer {
  const salt = randomBytes(16);
  const okey = objectKey(master, salt, key);
  const n = chunkCount(data.length, chunk);
  const out = Buffer.allocUnsafe(storedSize(data.length, chunk));
  out.fill(0, 0, HEADER_SIZE);
  MAGIC.copy(out, 0);
  out[4] = 1;
  out[5] = 1;
  keyId.copy(out, 8);
  salt.copy(out, 16);
  out.writeBigUInt64BE(BigInt(data.length), 32);
  out.writeUInt32BE(chunk, 40);
  const aad = out.subarray(0, AUTH_LEN);
  headerTag(okey, aad).copy(out, AUTH_LEN);
  let pos = HEADER_SIZE;
  for (let i = 0; i < n; i++) {
    const c = createCipheriv('aes-256-gcm', okey, nonce(i));
    c.setAAD(aad);
    const plain = data.subarray(i * chunk, Math.min(data.length, (i + 1) * chunk));
    const enc = c.update(plain);
    enc.copy(out, pos);
    pos += enc.length;
    c.final();
    c.getAuthTag().copy(out, pos);
    pos += TAG_SIZE;
  }
  return out;
}

/** Parses the header's fields; a problem when it is not format 1 (no tag check here: see verifyHeader). */
export function parseHeader(raw: Buffer): Header | HeaderProblem {
  if (raw.length < HEADER_SIZE || !raw.subarray(0, 4).equals(MAGIC)) return 'NOT_ENCRYPTED';
  if (raw[4] !== 1 || raw[5] !== 1) return 'DAMAGED';
  const length = raw.readBigUInt64BE(32);
  const chunk = raw.readUInt32BE(40);
  if (length > BigInt(Number.MAX_SAFE_INTEGER) || chunk < 1 || chunk > 2 ** 30) return 'DAMAGED';
  return { keyId: raw.subarray(8, 16), salt: raw.subarray(16, 32), length: Number(length), chunk, raw: raw.subarray(0, HEADER_SIZE) };
}

/** True when the header tag verifies under `okey` (the object key derived from its salt). */
export function verifyHeader(h: Header, okey: Buffer): boolean {
  const d = createDecipheriv('aes-256-gcm', okey, HEADER_NONCE);
  d.setAAD(h.raw.subarray(0, AUTH_LEN));
  d.setAuthTag(h.raw.subarray(AUTH_LEN, HEADER_SIZE));
  try {
    d.final();
    return true;
  } catch {
    return false;
  }
}

/**
 * Decrypts the chunks `first…` held in `stored` (which starts at chunkOffset(first)) into plaintext; null
 * when any chunk fails its tag or `stored` has the wrong length.
 */
export function decryptChunks(h: Header, okey: Buffer, first: number, count: number, stored: Buffer): Buffer | null {
  const total = chunkCount(h.length, h.chunk);
  if (first + count > total) return null;
  const plainLen = Math.min(h.length, (first + count) * h.chunk) - first * h.chunk;
  if (stored.length !== plainLen + count * TAG_SIZE) return null;
  const out = Buffer.allocUnsafe(Math.max(0, plainLen));
  const aad = h.raw.subarray(0, AUTH_LEN);
  let pos = 0;
  let at = 0;
  for (let i = first; i < first + count; i++) {
    const len = Math.min(h.chunk, h.length - i * h.chunk);
    const d = createDecipheriv('aes-256-gcm', okey, nonce(i));
    d.setAAD(aad);
    d.setAuthTag(stored.subarray(pos + len, pos + len + TAG_SIZE));
    const part = d.update(stored.subarray(pos, pos + len));
    try {
      d.final();
    } catch {
      return null;
    }
    part.copy(out, at);
    at += part.length;
    pos += len + TAG_SIZE;
  }
  return out;
}
