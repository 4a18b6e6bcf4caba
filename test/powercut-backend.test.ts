/**
 * The file:// backend under a power cut: a child process (helpers/put-child.ts, the same one as the kill -9
 * test of backend-conformance.test.ts) overwrites 8 keys in nested directories with ever newer versions of
 * changing sizes and logs each resolved put; its backend directory is on a loop-device ext4 that is cut at a
 * random moment (helpers/powercut.ts), the child killed, the filesystem mounted again. Every object whose put
 * resolved must be there whole, at its last acknowledged version or a later one (volume/backend/file-store.ts:
 * temp file, fsync, rename, fsync of the directory and its new ancestors).
 * Rounds: VPOOLFS_POWERCUT_ROUNDS (default 6); VPOOLFS_SEED replays the cut moments.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openBlobStore } from '../volume/backend/index.js';
import { readAckLog } from './helpers/ack-log.js';
import { tempRoot } from './helpers/mount.js';
import { LoopFs, powercutTest } from './helpers/powercut.js';
import { markCut } from './helpers/powercut-vpool.js';
import { CRASH_KEYS, crashKey, crashPayload, payloadHeader } from './helpers/put-child.js';
import { seeded } from './helpers/seed.js';

const test = powercutTest();
const ROUNDS = Number(process.env.VPOOLFS_POWERCUT_ROUNDS ?? 6);
const CHILD = fileURLToPath(new URL('./helpers/put-child.js', import.meta.url));

test(`file:// backend: every put that resolved survives a power cut whole (${ROUNDS} rounds)`, async (t) => {
  const root = await tempRoot(t, 'vpoolfs-pc-');
  const lfs = await LoopFs.create(t, root, 'lfs', 512);
  const { seed, rand: r } = seeded(t);
  const problems: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const dir = lfs.p(`b${round}`);
    const url = pathToFileURL(dir).href;
    const acks = path.join(root, `b${round}.acks`);
    const runMs = 50 + Math.floor(r() * 1500);
    const child = spawn(process.execPath, [CHILD, url, '1', acks], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      void exited.then(() => reject(new Error(`put-child exited before it was ready: ${stderr}`)));
    });
    await sleep(runMs);
    // stop the child, mark its log, then cut: a put that resolves after the marker may have straddled the cut
    // (an fsync in flight when the filesystem goes down can return success) and counts as not acknowledged
    child.kill('SIGSTOP');
    markCut(acks);
    await lfs.cut();
    child.kill('SIGKILL');
    await exited;
    await lfs.remount();

    const last = new Map<number, number>();
    const lines = readAckLog(acks);
    for (const l of lines.slice(0, lines.indexOf('cut'))) {
      const [, i, v] = l.split(' ').map(Number);
      last.set(i, Math.max(last.get(i) ?? 0, v));
    }
    const where = `round ${round} (seed ${seed}, cut after ${runMs} ms, ${[...last.values()].length} keys acknowledged)`;
    const store = await openBlobStore(url);
    for (let i = 0; i < CRASH_KEYS; i++) {
      const want = last.get(i);
      let got: Buffer;
      try {
        got = await store.get(crashKey(i));
      } catch (err) {
        if (want !== undefined) problems.push(`${where}: ${crashKey(i)}: acknowledged at version ${want}, now ${(err as Error).message}`);
        continue;
      }
      const h = payloadHeader(got);
      if (h === null || h.index !== i || !got.equals(crashPayload(i, h.version))) {
        problems.push(`${where}: ${crashKey(i)}: not a whole object (${got.length} bytes, header ${JSON.stringify(h)})`);
      } else if (want !== undefined && h.version < want) {
        problems.push(`${where}: ${crashKey(i)}: version ${h.version}, older than the acknowledged ${want}`);
      }
    }
    await store.close();
    t.log(`${where}: checked`);
  }
  t.deepEqual(problems, [], `VPOOLFS_SEED=${seed}:\n${problems.join('\n')}`);
});
