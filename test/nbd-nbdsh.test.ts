/**
 * The NBD server against libnbd (nbdsh and its Python binding): every handshake option (LIST, INFO, GO,
 * ABORT, STRUCTURED_REPLY, LIST/SET_META_CONTEXT) and command (READ, WRITE with FUA, FLUSH, WRITE_ZEROES
 * with and without NO_HOLE, BLOCK_STATUS with REQ_ONE, several in flight), the errors it answers (unknown
 * export, past the end, TRIM past the end, a flag not allowed, a read-only template), simple replies; then
 * a model-based run: random operations on two connections against a plain reference (seed printed;
 * VPOOLFS_SEED replays, VPOOLFS_NBD_ROUNDS sets the length).
 */
import { truncate, writeFile } from 'node:fs/promises';
import { fuseTest } from './helpers/mount.js';
import { nbdScript, ok, q, startNbdMount } from './helpers/nbd.js';
import { runSeed } from './helpers/seed.js';

const test = fuseTest();
const MiB = 2 ** 20;

test('nbdsh: every option and command, and the errors the server answers', async (t) => {
  const n = await startNbdMount(t);
  await writeFile(n.m.p('opt.img'), '');
  await truncate(n.m.p('opt.img'), 16 * MiB);
  await writeFile(n.m.p('tpl.img'), Buffer.alloc(8192, 7));
  await ok(t, `setfattr -n user.vdisk.template -v 1 ${q(n.m.p('tpl.img'))}`);
  const r = await nbdScript('nbd_options.py', [n.sock, 'opt.img', 'tpl.img']);
  t.is(r.code, 0, `${r.stdout}\n${r.stderr}`);
  t.is(r.stdout.trim(), 'ok');
  // nbdsh itself (its wrapper runs `python3`: put the system one first, where libnbd's binding is)
  const out = await ok(t, `PATH=/usr/bin:$PATH nbdsh -u ${q(n.uri('tpl.img'))} -c 'assert h.get_size() == 8192' -c 'print(h.pread(4, 0).hex(), h.is_read_only(), h.can_multi_conn())'`);
  t.is(out.trim(), '07070707 True True');
  t.regex(n.m.log, /NBD request refused: TRIM of 8192 bytes at \d+ is past the end/);
});

test('model: random operations on two connections against a plain reference, then the mount agrees', async (t) => {
  const n = await startNbdMount(t);
  const size = 32 * MiB;
  await writeFile(n.m.p('model.img'), '');
  await truncate(n.m.p('model.img'), size);
  const seed = runSeed();
  const rounds = Number(process.env.VPOOLFS_NBD_ROUNDS ?? 3000);
  t.log(`seed ${seed} (VPOOLFS_SEED=${seed} replays), ${rounds} rounds`);
  const r = await nbdScript('nbd_model.py', [n.sock, 'model.img', size, seed, rounds, n.m.p('model.img')]);
  t.is(r.code, 0, `seed ${seed}:\n${r.stdout}\n${r.stderr}`);
  t.is(r.stdout.trim(), `ok ${rounds}`);
});
