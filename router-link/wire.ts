/**
 * The router link's wire format (docs/cluster.md, "The router link"). Frames are the DTL's
 * (dtl-client/frame.ts: magic, version, type, request id, length, payload, crc32) with the magic 'RL', so
 * that a DTL peer and a link peer never take each other's frames for their own. Messages:
 *
 *   Hello   server → client on connect: u8 auth required, 32-byte nonce, JSON {router, vpool}
 *   Auth    client → server (with a secret): its nonce, HMAC (dtl-client/auth.ts, label 'vpoolfs-link')
 *   AuthOk  server → client: the server's HMAC
 *   Ident   client → server, once, after the handshake: JSON {router}, the follower's name (the owner counts the
 *           handles each router holds: the automatic move at the end of a live migration, docs/cluster.md)
 *   Call    client → server: one handler call (fuse/handlers.ts), id chosen by the client
 *   Reply   server → client: the handler's answer, with the id of its call; replies come in any order
 *
 * A Call or Reply payload: u32 length of a JSON array, the JSON, then each buffer as u32 length + bytes.
 * In the JSON a buffer stands as {"$b": index}. Call: [op, args]; Reply: [code, values]. A payload that does
 * not decode, or a call whose arguments do not fit its signature (SIGNATURES), is a protocol error.
 */
import { DtlError } from '../dtl-client/errors.js';
import { MAX_PAYLOAD } from '../dtl-client/frame.js';

export const LINK_MAGIC = 0x4c52; // 'RL'
export const LINK_LABEL = 'vpoolfs-link';

export const enum Link {
  Hello = 1,
  Auth = 2,
  AuthOk = 3,
  Ident = 4,
  Call = 10,
  Reply = 0x80,
}

/** The biggest read a call may ask for (its data comes back in one frame). */
export const MAX_READ = MAX_PAYLOAD - 64 * 1024;

/**
 * What each forwarded handler takes (the callback excluded): `path` an absolute path in the vPool, `fh` a
 * file handle the caller got from open/create on this connection, `out` read's buffer (sent as null: the
 * data comes back in the reply), `buf` bytes, `int` a safe integer, `num` a finite number, `str` a string,
 * `whence` 'data' or 'hole'. fsyncdir is not forwarded (it has nothing to do anywhere).
 */
export const SIGNATURES: Record<string, readonly string[]> = {
  getattr: ['path'],
  fgetattr: ['path', 'fh'],
  readdir: ['path'],
  access: ['path', 'int'],
  statfs: ['path'],
  mkdir: ['path', 'int'],
  rmdir: ['path'],
  create: ['path', 'int'],
  mknod: ['path', 'int', 'int'],
  unlink: ['path'],
  rename: ['path', 'path'],
  utimens: ['path', 'num', 'num'],
  chmod: ['path', 'int'],
  chown: ['path', 'int', 'int'],
  open: ['path', 'int'],
  read: ['str', 'fh', 'out', 'int', 'int'],
  write: ['str', 'fh', 'buf', 'int', 'int'],
  flush: ['str', 'fh'],
  fsync: ['str', 'int', 'fh'],
  release: ['str', 'fh'],
  truncate: ['path', 'int'],
  ftruncate: ['str', 'fh', 'int'],
  fallocate: ['str', 'fh', 'int', 'int', 'int'],
  lseek: ['str', 'fh', 'int', 'whence'],
  setxattr: ['path', 'str', 'buf', 'int', 'int'],
  getxattr: ['path', 'str', 'int'],
  listxattr: ['path'],
  removexattr: ['path', 'str'],
};

/**
 * Calls between routers about ownership per vDisk (docs/cluster.md, "Ownership per vDisk"), served only by a
 * router link that offers them (tools/daemon/delegate-side.ts): the vPool's owner asks a router to serve a vDisk
 * it handed over (id, its path, the owner tag of the delegation) or to hand it back (id).
 */
export const CONTROL_SIGNATURES: Record<string, readonly string[]> = {
  vdiskServe: ['str', 'path', 'int'],
  vdiskReturn: ['str'],
  // the open handles of a vDisk (path) at the router serving it, per router, but the asker's (tools/daemon/vdisk-automove.ts)
  vdiskHolders: ['path', 'str'],
  // a management API request on a delegated vDisk, forwarded by the vPool's owner: method, URL, JSON body
  // (tools/daemon/delegate-calls.ts); and the owner's snapshot schedule on it: vDisk path, what, JSON arguments
  vdiskApi: ['str', 'str', 'buf'],
  vdiskSnapshots: ['path', 'str', 'buf'],
};

/** The index of the file handle in an op's arguments, or -1. */
/**
 * Whether an open with these flags may write (O_WRONLY or O_RDWR). The automatic move per vDisk counts only such
 * handles (tools/daemon/vdisk-automove.ts): a VM's disk is open read-write, while a backup, a checksum or a test's
 * read-back opens it read-only and must not pull the vDisk to its router.
 */
export function opensForWrite(flags: number): boolean {
  return (flags & 3) !== 0;
}

/**
 * Where a handle's `path` is after a rename of `from` to `to`: `to` for `from` itself, the same place under `to`
 * for a path under `from`, else unchanged. The tables that keep a path per open handle follow renames with it.
 */
export function renamedPath(path: string, from: string, to: string): string {
  if (path === from) return to;
  return path.startsWith(`${from}/`) ? to + path.slice(from.length) : path;
}

export function fhIndex(op: string): number {
  return SIGNATURES[op]?.indexOf('fh') ?? -1;
}

/** Why `args` do not fit `op`'s signature, or null when they do. */
export function badArgs(op: string, args: unknown[]): string | null {
  const sig = SIGNATURES[op] ?? CONTROL_SIGNATURES[op];
  if (sig === undefined) return `unknown operation ${JSON.stringify(op.slice(0, 40))}`;
  if (args.length !== sig.length) return `${op} takes ${sig.length} arguments, got ${args.length}`;
  for (let i = 0; i < sig.length; i++) {
    const v = args[i];
    const ok = ((): boolean => {
      switch (sig[i]) {
        case 'path': return typeof v === 'string' && v.startsWith('/') && v.length <= 4096 && !v.includes('\0');
        case 'str': return typeof v === 'string' && v.length <= 4096;
        case 'fh': case 'int': return typeof v === 'number' && Number.isSafeInteger(v);
        case 'num': return typeof v === 'number' && Number.isFinite(v);
        case 'out': return v === null;
        case 'buf': return Buffer.isBuffer(v);
        case 'whence': return v === 'data' || v === 'hole';
        default: return false;
      }
    })();
    if (!ok) return `${op}: argument ${i + 1} is not of kind ${sig[i]}`;
  }
  if (op === 'read' && ((args[3] as number) < 0 || (args[3] as number) > MAX_READ)) return `read of ${args[3] as number} bytes (at most ${MAX_READ})`;
  if (op === 'write' && (args[3] as number) !== (args[2] as Buffer).length) return `write: length ${args[3] as number} is not the data's ${(args[2] as Buffer).length}`;
  return null;
}

/** Encodes [head, values…] with its buffers, as payload parts (no copy of the buffers). */
export function encodeMessage(head: unknown, values: readonly unknown[]): Buffer[] {
  const bufs: Buffer[] = [];
  const json = JSON.stringify([head, values.map((v) => pack(v, bufs))]);
  const j = Buffer.from(json);
  const first = Buffer.allocUnsafe(4 + j.length);
  first.writeUInt32LE(j.length, 0);
  j.copy(first, 4);
  const parts: Buffer[] = [first];
  for (const b of bufs) {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32LE(b.length, 0);
    parts.push(len, b);
  }
  return parts;
}

function pack(v: unknown, bufs: Buffer[]): unknown {
  if (v instanceof Uint8Array) {
    bufs.push(Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.length));
    return { $b: bufs.length - 1 };
  }
  if (v === undefined) return null;
  if (Array.isArray(v)) return v.map((x) => pack(x, bufs));
  return v;
}

/** Decodes a Call or Reply payload: [head, values]. Throws PROTOCOL on anything malformed. */
export function decodeMessage(p: Buffer): [unknown, unknown[]] {
  const bad = (why: string): never => { throw new DtlError('PROTOCOL', `malformed router link message: ${why}`); };
  if (p.length < 4) bad('shorter than its JSON length');
  const jl = p.readUInt32LE(0);
  if (4 + jl > p.length) bad(`JSON of ${jl} bytes past the end of a ${p.length}-byte payload`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(p.subarray(4, 4 + jl).toString('utf8'));
  } catch (err) {
    return bad(`not JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || !Array.isArray(parsed[1])) bad('not [head, values]');
  const bufs: Buffer[] = [];
  let off = 4 + jl;
  while (off < p.length) {
    if (off + 4 > p.length) bad('a buffer length cut short');
    const n = p.readUInt32LE(off);
    if (off + 4 + n > p.length) bad(`a buffer of ${n} bytes past the end of the payload`);
    bufs.push(p.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  const used = new Set<number>();
  const unpack = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(unpack);
    if (v !== null && typeof v === 'object' && '$b' in v) {
      const i = (v as { $b: unknown }).$b;
      if (typeof i !== 'number' || bufs[i] === undefined || used.has(i)) bad(`a bad buffer reference ${JSON.stringify(i)}`);
      used.add(i as number);
      return bufs[i as number];
    }
    return v;
  };
  const values = (parsed as [unknown, unknown[]])[1].map(unpack);
  if (used.size !== bufs.length) bad(`${bufs.length - used.size} buffer(s) not referenced`);
  return [(parsed as [unknown, unknown[]])[0], values];
}

/** The Hello payload: auth required, the server's nonce, who it is. */
export function encodeHello(auth: boolean, nonce: Buffer, who: { router: string; vpool: string }): Buffer {
  return Buffer.concat([Buffer.from([auth ? 1 : 0]), nonce, Buffer.from(JSON.stringify(who))]);
}

export function decodeHello(p: Buffer, nonceBytes: number): { auth: boolean; nonce: Buffer; router: string; vpool: string } {
  if (p.length < 1 + nonceBytes + 2) throw new DtlError('PROTOCOL', `a router link Hello of ${p.length} bytes is too short`);
  let who: unknown;
  try {
    who = JSON.parse(p.subarray(1 + nonceBytes).toString('utf8'));
  } catch {
    throw new DtlError('PROTOCOL', 'a router link Hello without its JSON (not a vpoolfs router link?)');
  }
  const w = who as { router?: unknown; vpool?: unknown };
  if (typeof w?.router !== 'string' || typeof w.vpool !== 'string') throw new DtlError('PROTOCOL', 'a router link Hello without router and vpool');
  return { auth: p[0] === 1, nonce: p.subarray(1, 1 + nonceBytes), router: w.router, vpool: w.vpool };
}
