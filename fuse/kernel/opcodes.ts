/**
 * The opcode table of the kernel engine (after go-fuse's raw layer): for each opcode vpoolfs answers,
 * its name, its body decoder, its handler, and whether the kernel expects a reply. An opcode missing
 * here is answered ENOSYS by the session (the kernel then stops sending most of them, e.g. STATX falls
 * back to GETATTR).
 */
import type { OpHandler } from './context.js';
import { decode } from './decode.js';
import * as dir from './ops-dir.js';
import * as entry from './ops-entry.js';
import * as file from './ops-file.js';
import * as session from './ops-session.js';
import * as xattr from './ops-xattr.js';
import { Op } from './protocol.js';

export interface OpcodeEntry {
  name: string;
  decode: (b: Buffer) => unknown;
  handle: OpHandler<any>;
  /** false for FORGET, BATCH_FORGET and INTERRUPT: the kernel waits for no answer. */
  reply: boolean;
}

const none = (_b: Buffer): undefined => undefined;

function e<T>(name: string, dec: (b: Buffer) => T, handle: OpHandler<T>, reply = true): OpcodeEntry {
  return { name, decode: dec, handle, reply };
}

export const OPCODES: ReadonlyMap<number, OpcodeEntry> = new Map([
  [Op.INIT, e('INIT', decode.init, session.init)],
  [Op.DESTROY, e('DESTROY', none, session.destroy)],
  [Op.INTERRUPT, e('INTERRUPT', decode.interrupt, session.interrupt, false)],
  [Op.LOOKUP, e('LOOKUP', decode.name, entry.lookup)],
  [Op.FORGET, e('FORGET', decode.forget, entry.forget, false)],
  [Op.BATCH_FORGET, e('BATCH_FORGET', decode.batchForget, entry.batchForget, false)],
  [Op.GETATTR, e('GETATTR', decode.getattr, entry.getattr)],
  [Op.SETATTR, e('SETATTR', decode.setattr, entry.setattr)],
  [Op.MKNOD, e('MKNOD', decode.mknod, entry.mknod)],
  [Op.MKDIR, e('MKDIR', decode.mkdir, entry.mkdir)],
  [Op.UNLINK, e('UNLINK', decode.name, entry.unlink)],
  [Op.RMDIR, e('RMDIR', decode.name, entry.rmdir)],
  [Op.RENAME, e('RENAME', decode.rename, entry.rename)],
  [Op.RENAME2, e('RENAME2', decode.rename2, entry.rename)],
  [Op.STATFS, e('STATFS', none, entry.statfs)],
  [Op.ACCESS, e('ACCESS', decode.access, entry.access)],
  [Op.OPEN, e('OPEN', decode.open, file.open)],
  [Op.CREATE, e('CREATE', decode.create, file.create)],
  [Op.READ, e('READ', decode.read, file.read)],
  [Op.WRITE, e('WRITE', decode.write, file.write)],
  [Op.FLUSH, e('FLUSH', decode.flush, file.flush)],
  [Op.RELEASE, e('RELEASE', decode.release, file.release)],
  [Op.FSYNC, e('FSYNC', decode.fsync, file.fsync)],
  [Op.FALLOCATE, e('FALLOCATE', decode.fallocate, file.fallocate)],
  [Op.LSEEK, e('LSEEK', decode.lseek, file.lseek)],
  [Op.OPENDIR, e('OPENDIR', decode.open, dir.opendir)],
  [Op.READDIR, e('READDIR', decode.read, dir.readdir)],
  [Op.RELEASEDIR, e('RELEASEDIR', decode.release, dir.releasedir)],
  [Op.FSYNCDIR, e('FSYNCDIR', decode.fsync, dir.fsyncdir)],
  [Op.SETXATTR, e('SETXATTR', decode.setxattr, xattr.setxattr)],
  [Op.GETXATTR, e('GETXATTR', decode.getxattr, xattr.getxattr)],
  [Op.LISTXATTR, e('LISTXATTR', decode.listxattr, xattr.listxattr)],
  [Op.REMOVEXATTR, e('REMOVEXATTR', decode.name, xattr.removexattr)],
]);
