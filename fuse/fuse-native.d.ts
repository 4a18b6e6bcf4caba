/**
 * Types for the parts of fuse-native 2.2.6 (a CommonJS module without typings) that vpoolfs uses.
 * Callbacks take a result code first: 0 or a positive count on success, a negative errno on failure.
 */
declare module 'fuse-native' {
  export type Cb = (code: number, ...rest: unknown[]) => void;
  export interface FuseStat {
    mode: number;
    uid: number;
    gid: number;
    size: number;
    nlink: number;
    ino: number;
    blksize: number;
    blocks: number;
    atime: number;
    mtime: number;
    ctime: number;
  }
  export interface FuseStatfs {
    bsize: number;
    frsize: number;
    blocks: number;
    bfree: number;
    bavail: number;
    files: number;
    ffree: number;
    favail: number;
    fsid: number;
    flag: number;
    namemax: number;
  }
  export interface FuseOpts {
    force?: boolean;
    mkdir?: boolean;
    timeout?: number | false;
    fsname?: string;
    subtype?: string;
    debug?: boolean;
    allowOther?: boolean;
    [key: string]: unknown;
  }
  /** The native signal bound to one request: code first, then op-specific values. */
  export type Signal = (code: number, ...rest: unknown[]) => void;
  class Fuse {
    constructor(mnt: string, ops: Record<string, unknown>, opts?: FuseOpts);
    readonly mnt: string;
    readonly opts: FuseOpts;
    ops: Record<string, (...args: any[]) => void>;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    _fuseOptions(): string;
    static readonly ENOENT: number;
  }
  export default Fuse;
}
