/**
 * The NBD server's one seam to the volume layer: an export is a vDisk of the vPool, named by its path
 * without the leading `/` (`vms/web/root.img`). Everything the server does to a vDisk goes through
 * VDiskExport (read, write, flush, zeroes, block status, trim), over the vPool's public VPool/VDisk API,
 * so that the same vDisk object serves the FUSE mount and every NBD connection at once: one data path,
 * one cache, one DTL.
 *
 * While a connection has an export open, the vDisk is in the mount's open-file table (fuse/fds.ts) like a
 * file a process holds open: rollback answers EBUSY for it, as for an open file (fuse/xattr-snapshot.ts).
 */
import { VpoolError } from '../util/errors.js';
import type { FdTable } from '../fuse/fds.js';
import { CLUSTER_SIZE, type VDisk, type VPool } from '../volume/types.js';
import { STATE_HOLE, STATE_ZERO } from './protocol.js';
import type { Extent } from './wire.js';

/** A bad export name or a vDisk that is not there: the handshake answers it with NBD_REP_ERR_UNKNOWN / INVALID. */
export class ExportError extends Error {
  constructor(readonly kind: 'invalid' | 'unknown', message: string) {
    super(message);
  }
}

/** The vPool path of an export name: `vms/a.img` and `/vms/a.img` are `/vms/a.img`; no `.`, `..` or NUL. */
export function exportPath(name: string): string {
  const parts = name.split('/').filter((p) => p.length > 0);
  if (parts.length === 0) throw new ExportError('invalid', 'no export name: give the path of a vDisk in the vPool, like vms/web/root.img');
  if (parts.some((p) => p === '.' || p === '..' || p.includes('\0'))) throw new ExportError('invalid', `bad export name ${JSON.stringify(name)}: a vDisk path without . or ..`);
  return '/' + parts.join('/');
}

/** Every vDisk of the vPool as an export name (for NBD_OPT_LIST), at most `max` of them. */
export function listExports(vpool: VPool, max = 10_000): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of vpool.readdir(dir)) {
      if (out.length >= max) return;
      const p = dir === '/' ? `/${name}` : `${dir}/${name}`;
      let kind: string;
      try {
        kind = vpool.stat(p).kind;
      } catch {
        continue; // removed meanwhile
      }
      if (kind === 'dir') walk(p);
      else out.push(p.slice(1));
    }
  };
  walk('/');
  return out.sort();
}

/** Zeros written by WRITE_ZEROES, at most this many bytes per vDisk write. */
const ZERO_PIECE = 1 << 20;
const ZEROS = Buffer.alloc(ZERO_PIECE);

export class VDiskExport {
  /** The size the client was told at the handshake: the bounds of every request. */
  readonly size: number;
  /** A template is read-only (its writes would fail READ_ONLY). */
  readonly readOnly: boolean;
  /**
   * TRIM needs a discard in the volume layer, which does not exist yet (VDisk.discard comes with a later
   * change): until then the server does not advertise NBD_FLAG_SEND_TRIM and trim() refuses.
   */
  readonly canTrim = false;
  /**
   * Every connection to a vDisk shares its one VDisk object, whose sync() makes every write acknowledged so
   * far durable, whichever connection (or the mount) wrote it: a flush on one connection covers the writes
   * acknowledged on the others, which is what NBD_FLAG_CAN_MULTI_CONN promises.
   */
  readonly multiConn = true;
  private fd: number | undefined;

  private constructor(readonly name: string, readonly path: string, private readonly disk: VDisk, private readonly fds: FdTable | undefined) {
    this.size = disk.size;
    this.readOnly = disk.info().template;
    this.fd = fds?.add(disk);
  }

  /** Opens the export `name`; ExportError if it is no vDisk. With `fds`, it counts as an open file until close(). */
  static open(vpool: VPool, name: string, fds: FdTable | undefined): VDiskExport {
    const p = exportPath(name);
    let disk: VDisk;
    try {
      if (vpool.stat(p).kind !== 'file') throw new ExportError('unknown', `${p.slice(1)} is a directory, not a vDisk`);
      disk = vpool.vdisk(p);
    } catch (err) {
      if (err instanceof ExportError) throw err;
      if (err instanceof VpoolError && (err.code === 'NOT_FOUND' || err.code === 'NOT_DIR' || err.code === 'IS_DIR')) {
        throw new ExportError('unknown', `no vDisk ${p.slice(1)} in this vPool`);
      }
      if (err instanceof VpoolError && (err.code === 'NAME_TOO_LONG' || err.code === 'INVALID')) {
        throw new ExportError('invalid', `bad export name ${JSON.stringify(name.slice(0, 200))}: ${err.message}`);
      }
      throw err;
    }
    return new VDiskExport(p.slice(1), p, disk, fds);
  }

  /** Reads into `out` from `offset`; bytes past the vDisk's current size (it shrank meanwhile) read as zeros. */
  async read(out: Buffer, offset: number): Promise<void> {
    const n = await this.disk.readInto(out, offset);
    if (n < out.length) out.fill(0, n);
  }

  /** Writes `data` (the volume layer copies it); with `fua`, durable as after a flush once resolved. */
  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    await this.disk.write(offset, data);
    if (fua) await this.disk.sync();
  }

  /** NBD_CMD_FLUSH: fsync of the vDisk (every acknowledged write durable against a host crash). */
  flush(): Promise<void> {
    return this.disk.sync();
  }

  /**
   * NBD_CMD_WRITE_ZEROES. Without a discard in the volume layer (VDisk.discard, a later change) zeros are
   * written. A range that is a hole already reads as zeros: without NO_HOLE it is left as it is (the vDisk
   * stays thin); with NO_HOLE (the client wants it allocated) zeros are written there too.
   */
  async zeroes(offset: number, length: number, noHole: boolean, fua: boolean): Promise<void> {
    const end = offset + length;
    if (noHole) {
      await this.writeZeros(offset, end);
    } else {
      for (const e of this.extents(offset, end, Infinity)) {
        if (!(e.flags & STATE_HOLE)) await this.writeZeros(e.offset, e.offset + e.length);
      }
    }
    if (fua) await this.disk.sync();
  }

  private async writeZeros(from: number, to: number): Promise<void> {
    for (let at = from; at < to; at += ZERO_PIECE) await this.disk.write(at, ZEROS.subarray(0, Math.min(ZERO_PIECE, to - at)));
  }

  /** NBD_CMD_TRIM: needs VDisk.discard (a later change); never called while canTrim is false. */
  trim(_offset: number, _length: number): Promise<void> {
    return Promise.reject(new VpoolError('NOT_SUPPORTED', 'trim: the volume layer has no discard yet'));
  }

  /**
   * base:allocation of [offset, offset+length): data extents (0) and holes (HOLE|ZERO), from the vDisk's
   * SEEK_DATA/SEEK_HOLE (cluster granularity), at most `max` of them, clipped to the range.
   */
  blockStatus(offset: number, length: number, max: number): Extent[] {
    return this.extents(offset, offset + length, max).map(({ length: l, flags }) => ({ length: l, flags }));
  }

  private extents(from: number, to: number, max: number): (Extent & { offset: number })[] {
    const out: (Extent & { offset: number })[] = [];
    let at = from;
    while (at < to && out.length < max) {
      const data = this.disk.seek(at, 'data');
      let next: number;
      let flags: number;
      if (data === at) {
        const hole = this.disk.seek(at, 'hole');
        next = hole < 0 ? to : hole;
        flags = 0;
      } else {
        next = data < 0 ? to : data;
        flags = STATE_HOLE | STATE_ZERO;
      }
      // never a zero-length extent, whatever seek answers at an odd size
      next = Math.min(to, Math.max(next, Math.min(to, (Math.floor(at / CLUSTER_SIZE) + 1) * CLUSTER_SIZE)));
      const last = out[out.length - 1];
      if (last && last.flags === flags) last.length += next - at;
      else out.push({ offset: at, length: next - at, flags });
      at = next;
    }
    return out;
  }

  /** Leaves the open-file table (idempotent). */
  close(): void {
    if (this.fd !== undefined) this.fds?.release(this.fd);
    this.fd = undefined;
  }
}
