/**
 * The `user.vdisk.*` xattr calls the CLI still makes (the scrub verbs, tools/commands/scrub-cmds.ts), through
 * fs-xattr (no setfattr/getfattr processes). A refusal is a ConfigError naming the verb, the file and the
 * errno (`scrub /mnt/vpool/d: Device or resource busy (EBUSY)`); the daemon's log has the cause.
 */
import os from 'node:os';
import { ConfigError } from '../daemon/config.js';

const ERRNO_TEXT: Record<string, string> = {
  EEXIST: 'File exists', ENOENT: 'No such file or directory', EINVAL: 'Invalid argument', EBUSY: 'Device or resource busy',
  EROFS: 'Read-only file system', ENOTSUP: 'Operation not supported', EOPNOTSUPP: 'Operation not supported', EIO: 'Input/output error',
  EISDIR: 'Is a directory', ENODATA: 'No data available',
};

function refusal(what: string, file: string, err: unknown): ConfigError {
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? (typeof e.errno === 'number' ? Object.entries(os.constants.errno).find(([, n]) => n === Math.abs(e.errno as number))?.[0] : undefined) ?? 'EIO';
  return new ConfigError(`${what} ${file}: ${ERRNO_TEXT[code] ?? e.message} (${code})`);
}

/** setxattr NAME=VALUE on FILE (the value as UTF-8 text); resolves once the daemon has done it. */
export async function setVdiskXattr(file: string, name: string, value: string, what: string): Promise<void> {
  const { setAttribute } = await import('fs-xattr');
  try {
    await setAttribute(file, name, Buffer.from(value, 'utf8'));
  } catch (err) {
    throw refusal(what, file, err);
  }
}

/** getxattr NAME of FILE, parsed as JSON. */
export async function getVdiskView(file: string, name: string, what: string): Promise<unknown> {
  const { getAttribute } = await import('fs-xattr');
  try {
    return JSON.parse((await getAttribute(file, name)).toString('utf8')) as unknown;
  } catch (err) {
    if (err instanceof SyntaxError) throw new ConfigError(`${what} ${file}: ${name} is not JSON (${err.message})`);
    throw refusal(what, file, err);
  }
}
