/**
 * crc32_combine of zlib, in JavaScript (node:zlib has crc32 but not its combine): the crc32 of A ‖ B from
 * crc32(A), crc32(B) and the length of B. Used where a cluster's crc32 was computed elsewhere (a FUSE
 * reader thread: fuse/kernel/write-crcs.ts) and the slot header's checksum covers header bytes + data
 * (volume/datapath/formats/sco-format.ts). The shift by a fixed length is a linear map on 32 bits: combineFor()
 * tabulates it per byte, so a combine costs four lookups.
 */

const POLY = 0xedb88320;

/** a × b modulo the crc32 polynomial (reflected bit order, as zlib's multmodp). */
function multmodp(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = (b & 1) !== 0 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) modulo the polynomial, k = 0..31 (zlib's x2n_table). */
const X2N: number[] = (() => {
  const t: number[] = [];
  let p = 0x40000000; // x^1
  t.push(p);
  for (let n = 1; n < 32; n++) t.push((p = multmodp(p, p)));
  return t;
})();

/** x^(8·len) modulo the polynomial: the operator that shifts a crc over `len` bytes (zlib's crc32_combine_gen). */
function shiftOperator(len: number): number {
  let p = 0x80000000; // x^0
  let k = 3;
  for (let n = len; n > 0; n = Math.floor(n / 2), k++) if (n % 2 === 1) p = multmodp(X2N[k & 31], p);
  return p;
}

/**
 * A combine for a fixed length of B: (crcA, crcB) → crc32(A ‖ B) when B is `len` bytes. The shift is
 * linear over GF(2), so it is the XOR of its value on each byte of crcA: four tables of 256.
 */
export function combineFor(len: number): (crcA: number, crcB: number) => number {
  const op = shiftOperator(len);
  const tables = Array.from({ length: 4 }, (_, byte) => {
    const t = new Uint32Array(256);
    for (let v = 0; v < 256; v++) t[v] = multmodp(op, (v << (8 * byte)) >>> 0);
    return t;
  });
  const [t0, t1, t2, t3] = tables;
  return (crcA, crcB) => (t0[crcA & 0xff] ^ t1[(crcA >>> 8) & 0xff] ^ t2[(crcA >>> 16) & 0xff] ^ t3[crcA >>> 24] ^ crcB) >>> 0;
}

type Combine = (crcA: number, crcB: number) => number;
/** The combines made so far, by length of B (bounded: a peer choosing odd lengths must not grow memory). */
const cached = new Map<number, Combine>();
const MAX_CACHED = 64;

/**
 * crc32(A ‖ B) from crc32(A), crc32(B) and B's length, for any length: the tabulated combine for the
 * lengths seen first (the DTL's cluster entries are all of one length), else zlib's generic way
 * (about log2(len) multiplications: still far cheaper than reading 4 KiB again).
 */
export function crc32Join(crcA: number, crcB: number, lenB: number): number {
  let f = cached.get(lenB);
  if (f === undefined) {
    if (cached.size >= MAX_CACHED) return (multmodp(shiftOperator(lenB), crcA >>> 0) ^ crcB) >>> 0;
    f = combineFor(lenB);
    cached.set(lenB, f);
  }
  return f(crcA >>> 0, crcB >>> 0);
}
