/**
 * A fuse-native subclass that fixes what vpoolfs needs and fuse-native 2.2.6 does not do:
 * - mount options it cannot express (`big_writes,max_write=131072`, allow_other as root);
 * - getattr/fgetattr hand over a ready stat array, and fgetattr reaches our handler with its fd
 *   (fuse-native routes fgetattr to getattr);
 * - getxattr/listxattr answer the size probe (size 0 → length) and a too-small buffer (ERANGE), and
 *   non-`user.*` getxattr (the kernel's `security.capability` before each write) answers ENODATA at once.
 */
import Fuse, { type FuseOpts, type Signal } from 'fuse-native';
import { E } from './errno.js';

type Handler = (...args: any[]) => void;

export class VpoolFuse extends Fuse {
  private readonly extraOptions: string[];

  constructor(mnt: string, ops: Record<string, Handler>, opts: FuseOpts, extraOptions: string[]) {
    super(mnt, ops, opts);
    this.extraOptions = extraOptions;
  }

  /** The `-o…` string passed to fuse_mount. */
  override _fuseOptions(): string {
    const base = super._fuseOptions();
    if (this.extraOptions.length === 0) return base;
    const extra = this.extraOptions.join(',');
    return base ? `${base},${extra}` : `-o${extra}`;
  }

  _op_getattr(signal: Signal, path: string): void {
    this.ops.getattr(path, (code: number, stat?: Uint32Array) => (code < 0 ? signal(code) : signal(0, stat)));
  }

  _op_fgetattr(signal: Signal, path: string, fd: number): void {
    this.ops.fgetattr(path, fd, (code: number, stat?: Uint32Array) => (code < 0 ? signal(code) : signal(0, stat)));
  }

  _op_getxattr(signal: Signal, path: string, name: string, valueBuf: Buffer | undefined, position: number): void {
    const ab = valueBuf?.buffer;
    if (!name.startsWith('user.')) return signal(E.ENODATA, ab);
    this.ops.getxattr(path, name, position, (code: number, value?: Buffer) => {
      if (code < 0 || value === undefined) return signal(code < 0 ? code : E.ENODATA, ab);
      const room = valueBuf?.length ?? 0;
      if (room === 0) return signal(value.length, ab);
      if (value.length > room) return signal(E.ERANGE, ab);
      value.copy(valueBuf!);
      signal(value.length, ab);
    });
  }

  _op_listxattr(signal: Signal, path: string, listBuf: Buffer | undefined): void {
    const ab = listBuf?.buffer;
    this.ops.listxattr(path, (code: number, names?: string[]) => {
      if (code < 0 || names === undefined) return signal(code < 0 ? code : E.EIO, ab);
      const packed = Buffer.from(names.map((n) => `${n}\0`).join(''));
      const room = listBuf?.length ?? 0;
      if (room === 0) return signal(packed.length, ab);
      if (packed.length > room) return signal(E.ERANGE, ab);
      packed.copy(listBuf!);
      signal(packed.length, ab);
    });
  }
}
