/**
 * systemd/vpoolfs-dtl.service is complete: a state directory that is the server's --dir, loopback
 * listen, restart on failure, clean stop, file limit, hardening (test/systemd.test.ts runs
 * `systemd-analyze verify` on it). And its ExecStart really starts a working server: run as written,
 * with only the directory and port moved to a temp place, a client registers and stores an entry.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DtlClient } from '../dtl-client/client.js';
import { encodeEntry } from '../dtl-client/messages.js';
import { CLI } from './helpers/mount.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const unit = fs.readFileSync(path.join(repo, 'systemd', 'vpoolfs-dtl.service'), 'utf8');

function values(key: string): string[] {
  return unit.split('\n').map((l) => l.trim()).filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}

test('the DTL unit: state directory = --dir, loopback, restart, clean stop, limits, hardening', (t) => {
  const [exec] = values('ExecStart');
  t.is(values('StateDirectory')[0], 'vpoolfs/dtl');
  t.true(exec.includes('--dir /var/lib/vpoolfs/dtl'));
  t.regex(exec, /--listen 127\.0\.0\.1:\d+/);
  t.deepEqual(values('Restart'), ['on-failure']);
  t.deepEqual(values('KillSignal'), ['SIGTERM']);
  t.true(Number(values('LimitNOFILE')[0]) >= 4096);
  for (const key of ['NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'PrivateTmp']) t.is(values(key).length, 1, `${key} set`);
});

test("the unit's ExecStart starts a working server", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-dtl-unit-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const args = values('ExecStart')[0].split(/\s+/);
  t.deepEqual(args.slice(0, 3), ['/usr/bin/env', 'vpoolfs', 'dtl-server']);
  const rest = args.slice(3).map((a) => (a === '/var/lib/vpoolfs/dtl' ? dir : a.replace(/^127\.0\.0\.1:\d+$/, '127.0.0.1:0')));
  const child = spawn(process.execPath, [CLI, 'dtl-server', ...rest], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}`)));
  });
  const c = new DtlClient({ servers: [address] });
  await c.register('vd', 'r', 1);
  await c.addEntries('vd', [encodeEntry(1, 1, 4096)]);
  await c.flush('vd');
  t.like(await c.getScoRange('vd'), { registered: true, entries: 1 });
  c.close();
  child.kill('SIGTERM');
  t.is(await exited, 0, 'SIGTERM: a clean exit');
  t.true(fs.existsSync(path.join(dir, 'vd', 'vd', 'meta')));
});
