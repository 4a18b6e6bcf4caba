/** Argument checks shared by the volume layer: every bad number is a clear INVALID or TOO_BIG. */
import { VolumeError } from '../../util/errors.js';
import { MAX_VDISK_SIZE } from '../types.js';

export function checkOffset(value: unknown, what: string, ctx: Record<string, unknown>): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new VolumeError('INVALID', `${what} must be a non-negative integer, got ${String(value)}`, { ...ctx, [what]: value });
  }
  return value;
}

export function checkSize(value: unknown, ctx: Record<string, unknown>): number {
  const size = checkOffset(value, 'size', ctx);
  if (size > MAX_VDISK_SIZE) {
    throw new VolumeError('TOO_BIG', `size ${size} is beyond the maximum vDisk size of 64 TiB (${MAX_VDISK_SIZE} bytes)`, { ...ctx, size });
  }
  return size;
}

/** A write must end at or below the maximum size. */
export function checkWriteRange(offset: unknown, length: number, ctx: Record<string, unknown>): number {
  const off = checkOffset(offset, 'offset', ctx);
  if (off + length > MAX_VDISK_SIZE) {
    throw new VolumeError('TOO_BIG', `a write of ${length} bytes at ${off} ends beyond the maximum vDisk size of 64 TiB`, { ...ctx, offset: off, length });
  }
  return off;
}
