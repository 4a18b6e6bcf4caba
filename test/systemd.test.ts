/**
 * The systemd units in systemd/ pass `systemd-analyze verify` (Debian package `systemd`) without a single
 * complaint about them, and say what issue 3 asks (instance = vPool, config file, restart on failure,
 * SIGTERM with a stop timeout, stale-mount clean-up before start and after stop).
 *
 * `verify` reports most mistakes (unknown keys, unparsable values) as warnings and still exits 0, so the
 * exit code alone proves little: a unit passes only if the exit code is 0 AND verify printed nothing that
 * names it. The ExecStart binary is /usr/bin/env (which exists everywhere), so there is no "not
 * executable" complaint to excuse. The last test feeds deliberately broken copies through the same
 * check, to prove it is not vacuous.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// This file runs as dist/test/systemd.test.js.
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const unitsDir = path.join(repo, 'systemd');
const UNITS = ['vpoolfs@.service', 'vpoolfs-dtl.service'];

function haveAnalyze(): boolean {
  return spawnSync('systemd-analyze', ['--version']).status === 0;
}

/** Runs verify on one unit file; returns the complaints that concern it (empty = clean). */
function verify(file: string): string[] {
  const r = spawnSync('systemd-analyze', ['verify', '--recursive-errors=no', '--man=no', file], { encoding: 'utf8' });
  if (r.error) throw r.error;
  const base = path.basename(file);
  const stem = base.replace(/@?\.service$/, '');
  // Lines about other units of the host (dependencies it loads) are not ours to judge.
  const ours = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l && (l.includes(file) || l.includes(stem)));
  if (r.status !== 0 && ours.length === 0) ours.push(`systemd-analyze verify exited ${r.status}: ${r.stderr.trim()}`);
  return ours;
}

function read(unit: string): string {
  return fs.readFileSync(path.join(unitsDir, unit), 'utf8');
}

/** key=value lines of one section. */
function section(text: string, name: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const l = raw.trim();
    if (!l || l.startsWith('#')) continue;
    if (l.startsWith('[')) { cur = l; continue; }
    const i = l.indexOf('=');
    if (cur === `[${name}]` && i > 0) out.push([l.slice(0, i), l.slice(i + 1)]);
  }
  return out;
}

const values = (text: string, sec: string, key: string): string[] => section(text, sec).filter(([k]) => k === key).map(([, v]) => v);

for (const unit of UNITS) {
  test(`systemd-analyze verify: ${unit} is clean`, (t) => {
    if (!haveAnalyze()) return t.fail('systemd-analyze not found: install the Debian package systemd');
    t.deepEqual(verify(path.join(unitsDir, unit)), []);
  });
}

test('vpoolfs@.service: instance = vPool, config, restart, clean stop, stale-mount clean-up', (t) => {
  const u = read('vpoolfs@.service');
  t.deepEqual(values(u, 'Service', 'ExecStart'), ['/usr/bin/env vpoolfs mount /mnt/%i --config /etc/vpoolfs/%i.json']);
  t.true(values(u, 'Service', 'ExecStartPre').includes('-/bin/fusermount -uz /mnt/%i'));
  t.deepEqual(values(u, 'Service', 'ExecStopPost'), ['-/bin/fusermount -uz /mnt/%i']);
  t.deepEqual(values(u, 'Service', 'Restart'), ['on-failure']);
  t.deepEqual(values(u, 'Service', 'KillSignal'), ['SIGTERM']);
  t.deepEqual(values(u, 'Service', 'TimeoutStopSec'), ['120']);
  t.true(values(u, 'Unit', 'After').join(' ').includes('network-online.target'));
});

test('vpoolfs-dtl.service: loopback DTL server with its directory, restart on failure', (t) => {
  const u = read('vpoolfs-dtl.service');
  t.deepEqual(values(u, 'Service', 'ExecStart'), ['/usr/bin/env vpoolfs dtl-server --listen 127.0.0.1:26200 --dir /var/lib/vpoolfs/dtl']);
  t.deepEqual(values(u, 'Service', 'Restart'), ['on-failure']);
});

test('the verify check rejects broken units', (t) => {
  if (!haveAnalyze()) return t.fail('systemd-analyze not found: install the Debian package systemd');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-units-'));
  try {
    const good = read('vpoolfs@.service');
    const broken: Array<[string, string]> = [
      ['unknown key', good.replace('Restart=on-failure', 'Restrat=on-failure')],
      ['bad value', good.replace('Restart=on-failure', 'Restart=sometimes')],
      ['bad time', good.replace('TimeoutStopSec=120', 'TimeoutStopSec=two minutes')],
      ['broken section header', good.replace('[Service]', '[Service')],
      ['relative ExecStart', good.replace('ExecStart=/usr/bin/env vpoolfs', 'ExecStart=vpoolfs')],
    ];
    for (const [what, text] of broken) {
      t.not(text, good, `${what}: the mutation must apply`);
      const file = path.join(dir, 'vpoolfs@.service');
      fs.writeFileSync(file, text);
      const complaints = verify(file);
      t.true(complaints.length > 0, `${what} must be reported`);
      t.log(`${what}: ${complaints[0]}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
