/**
 * A rollback cut short by a kill of the process, after its intent was committed and while the new snapshot
 * list was on its way to the backend: the next start finishes it (ships the list, rebuilds the vDisk from the
 * backend) — the data, size and snapshots are those of the snapshot, in every later restart too.
 * A clone cut short the same way leaves nothing: no file, no local state, no backend objects.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pattern, poolEnv } from './helpers/vpool.js';

const CHILD = fileURLToPath(new URL('./helpers/snapshot-crash-child.js', import.meta.url));

/** Runs the child in `mode` until its operation is held at the backend, then SIGKILLs it. */
async function killWhileHeld(env: ReturnType<typeof poolEnv>, mode: 'rollback' | 'clone'): Promise<void> {
  const child = spawn(process.execPath, [CHILD, env.state, env.backendDir, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('held\n')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`the child exited (${code}) before the ${mode} was held: ${out}`)));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
}

test('a rollback killed half-way is finished at the next start', async (t) => {
  const env = poolEnv(t);
  await killWhileHeld(env, 'rollback');

  const want = Buffer.alloc(1 << 20);
  pattern(1, 200_000).copy(want);
  let pool = await env.open({ scoClusters: 8, tlogScos: 2 });
  t.is(pool.vdisk('/d').size, 1 << 20, 'the size as of s1');
  t.true((await pool.vdisk('/d').read(0, 1 << 20)).equals(want), 'the data as of s1');
  t.deepEqual(pool.snapshots.list('/d').map((s) => s.name), ['s1']);
  await pool.vdisk('/d').write(500_000, pattern(9, 1000));
  pattern(9, 1000).copy(want, 500_000);
  await env.close(pool);
  pool = await env.open({ scoClusters: 8, tlogScos: 2 });
  t.true((await pool.vdisk('/d').read(0, 1 << 20)).equals(want), 'after a local restart');
  await env.close(pool);
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ scoClusters: 8, tlogScos: 2 });
  t.true((await pool.vdisk('/d').read(0, 1 << 20)).equals(want), 'after a rebuild from the backend');
  t.deepEqual(pool.snapshots.list('/d').map((s) => [s.name, s.inBackend]), [['s1', true]]);
});

test('a clone killed half-way leaves nothing behind after the next start', async (t) => {
  const env = poolEnv(t);
  await killWhileHeld(env, 'clone');
  const wcBefore = fs.readdirSync(path.join(env.state, 'wc'));
  t.is(wcBefore.length, 2, 'the half-made clone had local state');
  const pool = await env.open();
  t.deepEqual(pool.readdir('/'), ['d']);
  const id = pool.vdisk('/d').id;
  t.deepEqual(fs.readdirSync(path.join(env.state, 'wc')), [id], 'the write cache of the half-made clone is gone');
  t.deepEqual(pool.snapshots.list('/d')[0].clones, []);
  await pool.snapshots.clone('/d', 's1', '/c'); // and cloning works
  const cid = pool.vdisk('/c').id;
  await env.close(pool); // waits for the removals
  t.deepEqual(fs.readdirSync(path.join(env.backendDir, 'vdisks')).sort(), [id, cid].sort(), 'the backend objects of the half-made clone were removed');
});
