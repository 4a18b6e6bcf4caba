/**
 * Runs extended-attribute calls through Python's os module (so values may hold any byte, NUL included)
 * and returns, per call, 'OK' (plus the value for a get) or the errno name — what a program sees.
 */
import type { ExecutionContext } from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ok, q } from './mount.js';

export type XattrCall = ['set', string, string, Buffer | string] | ['get', string, string];

export async function xattrCalls(t: ExecutionContext, calls: XattrCall[]): Promise<string[]> {
  const spec = calls.map((c) => (c[0] === 'set' ? ['set', c[1], c[2], Buffer.from(c[3]).toString('hex')] : c));
  const out = await ok(
    t,
    `python3 - ${q(JSON.stringify(spec))} <<'EOF'
import os, sys, json, errno
for c in json.loads(sys.argv[1]):
    try:
        if c[0] == 'set':
            os.setxattr(c[1], c[2], bytes.fromhex(c[3]))
            print('OK')
        else:
            print('OK ' + os.getxattr(c[1], c[2]).decode())
    except OSError as e:
        print(errno.errorcode[e.errno])
EOF`,
    600_000,
  );
  return out.trimEnd().split('\n');
}

/**
 * `--config` arguments for a mount without automatic snapshots or retention (the default hourly job would
 * add snapshots to the lists a test compares if it ran across the hour).
 */
export async function noAutoSnapshots(root: string): Promise<string[]> {
  const file = path.join(root, 'no-auto-snapshots.json');
  await writeFile(file, JSON.stringify({ schedule: { snapshot: null, retention: null, scrub: null } }));
  return ['--config', file];
}
