/**
 * The shared-secret handshake. On connect the server sends Hello {version, flags, its 32-byte nonce}.
 * With a secret, the client answers Auth {its nonce, HMAC-SHA256(secret, "vpoolfs-dtl client" | server
 * nonce | client nonce)}; the server checks it and answers AuthOk {HMAC(secret, "vpoolfs-dtl server" |
 * client nonce | server nonce)}, which the client checks in turn: both ends prove the secret, neither
 * sends it, and a recorded exchange cannot be replayed (fresh nonces each time). The router link
 * (router-link/) runs the same handshake with its own label ('vpoolfs-link'), so that a proof made for one
 * protocol is worthless for the other.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DtlError } from './errors.js';

export const NONCE_BYTES = 32;
export const MAC_BYTES = 32;

export function nonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

export function clientMac(secret: Buffer, serverNonce: Buffer, clientNonce: Buffer, label = 'vpoolfs-dtl'): Buffer {
  return createHmac('sha256', secret).update(`${label} client`).update(serverNonce).update(clientNonce).digest();
}

export function serverMac(secret: Buffer, clientNonce: Buffer, serverNonce: Buffer, label = 'vpoolfs-dtl'): Buffer {
  return createHmac('sha256', secret).update(`${label} server`).update(clientNonce).update(serverNonce).digest();
}

export function macEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Reads a secret file: its bytes, trailing whitespace trimmed; at least 16 bytes. */
export function readSecretFile(file: string, what = 'DTL'): Buffer {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    throw new DtlError('INVALID', `cannot read the ${what} secret file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { file });
  }
  let end = raw.length;
  while (end > 0 && (raw[end - 1] === 0x0a || raw[end - 1] === 0x0d || raw[end - 1] === 0x20 || raw[end - 1] === 0x09)) end--;
  if (end < 16) throw new DtlError('INVALID', `the ${what} secret in ${file} is ${end} bytes; use at least 16`, { file });
  return raw.subarray(0, end);
}
