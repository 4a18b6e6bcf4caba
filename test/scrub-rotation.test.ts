/**
 * A remote scrubber during a key rotation (issue 12; docs/scrubbing.md, docs/encryption.md "Key rotation"):
 * an encrypted vPool under key A is reopened with key B and A as old key (the rotation begins, the rekey job
 * not yet run, so the vDisk's old SCOs are still under A and its new writes under B). Then the real CLI:
 * `vpoolfs scrub --backend … --encryption-key-file B --old-encryption-key-file A` reads objects under either
 * key and writes its own under B; the owner applies the result and the vDisk reads the same; the rekey job
 * then finishes the rotation and B alone reads every byte after a rebuild, which still shows the last run. The CLI's key errors name its own
 * flags (no key, the new key alone, the old key alone), and a scrubber never begins a rotation nor turns a
 * plain backend encrypted (it does not write the marker).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { HEADER_SIZE, keyIdOf, parseHeader } from '../volume/backend/crypto-format.js';
import type { EncryptedBlobStore } from '../volume/backend/encrypted-store.js';
import { ENCRYPTION_MARKER, openBackend } from '../volume/backend/open-backend.js';
import { RekeyJob } from '../volume/policy/rekey-job.js';
import { CLI, ok, q, sh } from './helpers/mount.js';
import { CS, listFiles, pattern, poolEnv } from './helpers/vpool.js';

const A = Buffer.alloc(32, 0xa1);
const B = Buffer.alloc(32, 0xb2);
const idA = keyIdOf(A).toString('hex');
const idB = keyIdOf(B).toString('hex');

/** The key id in the header of each backend object under `prefix` (relative paths of the backend directory). */
function keyIds(backendDir: string, prefix: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of listFiles(backendDir).filter((x) => x.startsWith(prefix))) {
    const fd = fs.openSync(path.join(backendDir, f), 'r');
    const raw = Buffer.alloc(HEADER_SIZE);
    fs.readSync(fd, raw, 0, HEADER_SIZE, 0);
    fs.closeSync(fd);
    const h = parseHeader(raw);
    out.set(f, typeof h === 'object' ? h.keyId.toString('hex') : h);
  }
  return out;
}

test('a remote scrubber reads under the old and the new key during a rotation; its errors name its flags', async (t) => {
  const env = poolEnv(t);
  const keyA = path.join(env.root, 'a.key');
  const keyB = path.join(env.root, 'b.key');
  fs.writeFileSync(keyA, A.toString('hex'));
  fs.writeFileSync(keyB, B);
  const size = 64 * CS;

  // under A: the whole vDisk written, then half of it overwritten
  let pool = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: A }) });
  await pool.createFile('/d', 0o644, 0, 0, size);
  let v = pool.vdisk('/d');
  const id = v.info().id;
  await v.write(0, pattern(1, size));
  for (let c = 0; c < 64; c += 2) await v.write(c * CS, pattern(10 + c, CS));
  await env.close(pool);

  // the rotation begins (B, A kept for reading); more overwrites, now under B
  const rotating = (await openBackend(env.backendUrl, { encryptionKey: B, oldKeys: [A] })) as EncryptedBlobStore;
  pool = await env.open({ backend: rotating });
  v = pool.vdisk('/d');
  for (let c = 1; c < 64; c += 4) await v.write(c * CS, pattern(200 + c, CS));
  await pool.syncToBackend();
  const want = await v.read(0, size);
  const before = keyIds(env.backendDir, `vdisks/${id}/sco/`);
  t.true([...before.values()].includes(idA) && [...before.values()].includes(idB), `the vDisk's SCOs are under both keys: ${[...before.values()].join(' ')}`);

  const scrub = (keys: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    sh(`node ${q(CLI)} scrub --backend ${q(env.backendUrl)} --scratch ${q(path.join(env.root, 'scratch'))} --vdisk ${id} ${keys}`, { timeoutMs: 60_000 });
  const noKey = await scrub('');
  t.not(noKey.code, 0);
  t.regex(noKey.stderr, /is encrypted \(key id [0-9a-f]+\): run vpoolfs scrub --backend with --encryption-key-file/, 'no key: the scrub command\'s flag is named');
  t.notRegex(noKey.stderr, /mount with/);
  const newOnly = await scrub(`--encryption-key-file ${q(keyB)}`);
  t.not(newOnly.code, 0);
  t.regex(newOnly.stderr, new RegExp(`key id ${idA}; run vpoolfs scrub --backend with that key as --old-encryption-key-file too`), 'the new key alone: the old key is asked for');
  const oldOnly = await scrub(`--encryption-key-file ${q(keyA)}`);
  t.not(oldOnly.code, 0);
  t.regex(oldOnly.stderr, /run vpoolfs scrub --backend with the new key as --encryption-key-file and this one as --old-encryption-key-file/);
  const oldWithoutNew = await scrub(`--old-encryption-key-file ${q(keyA)}`);
  t.not(oldWithoutNew.code, 0);
  t.regex(oldWithoutNew.stderr, /--old-encryption-key-file: only with --encryption-key-file/);

  const out = await ok(t, `node ${q(CLI)} scrub --backend ${q(env.backendUrl)} --scratch ${q(path.join(env.root, 'scratch'))} --vdisk ${id} --json --encryption-key-file ${q(keyB)} --old-encryption-key-file ${q(keyA)}`, 60_000);
  const r = JSON.parse(out.trim().split('\n').pop()!) as { scrubId: string; nothingToDo: boolean; stats: { scosRewritten: number; bytesRead: number } };
  t.false(r.nothingToDo);
  t.true(r.stats.scosRewritten > 0, 'the scrubber rewrote SCOs (read under A and B)');
  const mine = keyIds(env.backendDir, `vdisks/${id}/scrub/${r.scrubId}/`);
  t.true(mine.size > 0 && [...mine.values()].every((k) => k === idB), `what the scrubber wrote is under the new key: ${[...mine.values()].join(' ')}`);
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(env.backendDir, ENCRYPTION_MARKER), 'utf8')).oldKeyIds, [idA], 'the scrubber left the marker alone');

  const applied = await pool.scrub.applyPending('/d');
  t.is(applied?.outcome, 'applied');
  t.true((await pool.vdisk('/d').read(0, size)).equals(want), '/d reads the same after the apply');
  t.deepEqual(await pool.scrub.sweep('/d', true), [], 'nothing left behind');
  const run = pool.scrub.statusAt('/d').lastRun;
  t.is(run?.outcome, 'applied', 'the apply is the last run');
  const done = await new RekeyJob({ store: rotating, gate: (w) => pool.backendGate!(w), localDir: env.state }).start();
  t.is(done.state, 'done', String(done.error));
  await env.close(pool);
  t.true([...keyIds(env.backendDir, 'vdisks/').values()].every((k) => k === idB), 'after the rotation every object is under B');
  fs.rmSync(env.state, { recursive: true, force: true });
  pool = await env.open({ backend: await openBackend(env.backendUrl, { encryptionKey: B }) });
  t.true((await pool.vdisk('/d').read(0, size)).equals(want), 'rebuilt with B alone, /d reads the same');
  t.deepEqual(pool.scrub.statusAt('/d').lastRun, run, 'the last run survives the rebuild (its copy in the backend, rewritten under B)');
  await env.close(pool);
});

test('a scrubber never changes the marker: it neither begins a rotation nor encrypts a plain backend', async (t) => {
  const env = poolEnv(t);
  const tool = 'vpoolfs scrub --backend';
  await t.throwsAsync(openBackend(env.backendUrl, { encryptionKey: B, tool }), { message: /is not encrypted: run vpoolfs scrub --backend without --encryption-key-file/ });
  t.false(fs.existsSync(path.join(env.backendDir, ENCRYPTION_MARKER)), 'no marker written into the plain backend');
  await (await openBackend(env.backendUrl, { encryptionKey: A })).close(); // a mount encrypts it under A
  await t.throwsAsync(openBackend(env.backendUrl, { encryptionKey: B, oldKeys: [A], tool }), { message: new RegExp(`still under key id ${idA}: its key rotation has not begun`) });
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(env.backendDir, ENCRYPTION_MARKER), 'utf8')), { format: 'vpoolfs-aes-256-gcm-chunked-1', keyId: idA }, 'the marker still names A alone');
  await t.throwsAsync(openBackend(env.backendUrl, { encryptionKey: B, tool }), { message: /wrong encryption key/ });
  await (await openBackend(env.backendUrl, { encryptionKey: A, tool })).close();
});
