/**
 * The places the mount benchmark runs fio on, each a directory that exists between start() and stop():
 * - `vpoolfs`: the CLI's mount with its default FUSE engine (a child process, shared/mount-target.ts);
 * - `vpoolfs-fuse-native`: the same with `--fuse-engine fuse-native` (the libfuse2 package);
 * - `c-passthrough`: bench/mount/c/passthrough_ll.c, a multi-threaded libfuse3 low-level passthrough in C, the
 *   ceiling of FUSE on this machine (built, with its packages installed, by c-passthrough.ts);
 * - `fn-passthrough`: bench/mount/passthrough.ts, a do-nothing passthrough on fuse-native (a child process);
 * - `local`: a temp directory on the local disk (the same filesystem the others keep their data on).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CLI, MountTarget, vpoolfsTarget, type Target } from '../shared/mount-target.js';
import { ensureCPassthrough } from './c-passthrough.js';

/** This file's folder in dist/ (dist/bench/mount/). */
const here = path.dirname(fileURLToPath(import.meta.url));

class LocalTarget implements Target {
  readonly name = 'local';
  readonly dir: string;
  constructor(root: string) {
    this.dir = path.join(root, 'local');
  }
  async start(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
  }
  async stop(): Promise<void> { /* the temp root is removed by the caller */ }
}

export const TARGET_NAMES = ['vpoolfs', 'vpoolfs-fuse-native', 'c-passthrough', 'fn-passthrough', 'local'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];
/** The targets that are vpoolfs (judged), and the references they are judged against. */
export const VPOOLFS_TARGETS: readonly TargetName[] = ['vpoolfs', 'vpoolfs-fuse-native'];
export const REFERENCES = { c: 'c-passthrough', fn: 'fn-passthrough', local: 'local' } as const;

/**
 * Builds one target under `root` (a fresh temp directory owned by the benchmark). `cli` is the vpoolfs
 * CLI the vpoolfs targets run (default: this build's; another build's to compare, e.g. a branch's dist/).
 */
export function makeTarget(name: TargetName, root: string, cli = DEFAULT_CLI): Target {
  switch (name) {
    case 'local':
      return new LocalTarget(root);
    case 'fn-passthrough': {
      const script = path.join(here, 'passthrough.js');
      const sub = path.join(root, name);
      return new MountTarget(name, sub, (mnt) => {
        if (!fs.existsSync(script)) throw new Error(`${script} is missing: run npm run build`);
        return { program: process.execPath, args: [script, mnt, path.join(sub, 'backing')] };
      }, 10_000);
    }
    case 'c-passthrough': {
      const sub = path.join(root, name);
      return new MountTarget(name, sub, (mnt) => {
        const backing = path.join(sub, 'backing');
        fs.mkdirSync(backing, { recursive: true });
        return { program: ensureCPassthrough(), args: [mnt, backing] };
      }, 10_000);
    }
    case 'vpoolfs':
      return vpoolfsTarget(name, root, cli, []);
    case 'vpoolfs-fuse-native':
      return vpoolfsTarget(name, root, cli, ['--fuse-engine', 'fuse-native']);
  }
}
