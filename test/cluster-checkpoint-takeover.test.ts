/**
 * Issue 15's long-history takeover across routers, as a test (the figures: `npm run bench:cluster`): router A
 * owns the vPool (real etcd, file:// backend, tiny SCOs and TLogs: one TLog per 8 clusters written, a map
 * checkpoint every CHECKPOINT_EVERY TLogs), B follows it. Seeded random writes through A's mount (a plain
 * in-memory reference beside them) give the vDisk a history of a few hundred TLogs; once A has shipped
 * everything (its vDisk recorded clean in etcd: the takeover is automatic without a DTL) and its background
 * checkpoints have caught up, `kill -9` A. B takes the vPool over and rebuilds the vDisk from the backend:
 * - every byte of the reference reads back through B's mount;
 * - B's log says the rebuild loaded the newest checkpoint in the backend (listed right after the kill, before
 *   B touched anything) and replayed exactly the TLogs after it — a count, not a time: a rebuild that ignored
 *   the checkpoint replays the whole chain and fails here.
 * The seed is printed; VPOOLFS_SEED replays a run, VPOOLFS_CKPT_TLOGS sets the history (default 300 TLogs).
 */
import { open } from 'node:fs/promises';
import { keyNumbers, onlyVDiskDir } from './helpers/backend-files.js';
import { fuseTest, logEntries, ok, q, startMount } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { until } from './helpers/until.js';
import { pattern, RefDisk } from './helpers/ref-disk.js';
import { seeded } from './helpers/seed.js';

const test = fuseTest();

const TLOGS = Number(process.env.VPOOLFS_CKPT_TLOGS ?? 300);
const CHECKPOINT_EVERY = 40;
const SCO_CLUSTERS = 8;
const CS = 4096;
const SIZE = 32 * 2 ** 20;
/**
 * SCOs of 8 clusters, one SCO per TLog: every 8 clusters written close a TLog; the age timer (2 s) only closes
 * the last one if the kernel merged writes and left it partly filled.
 */
const CONFIG = { scoClusters: SCO_CLUSTERS, tlogScos: 1, scoMaxAgeMs: 2000, checkpointEveryTlogs: CHECKPOINT_EVERY };

test('kill -9 of the owner of a vDisk with a long history: the follower rebuilds it from the newest map checkpoint, replays only the TLogs after it, and every byte reads back', async (t) => {
  const { seed: SEED, rand: random } = seeded(t);
  t.log(`${TLOGS} TLogs, a checkpoint every ${CHECKPOINT_EVERY}`);
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra', [], CONFIG));
  const b = await startMount(t, c.router('rb', [], CONFIG));
  t.is(logEntries(b.log, 'ready', { role: 'follower', owner: 'ra' }).length, 1, b.log);

  // the history: random runs of 1–8 clusters at random places, TLOGS × 8 clusters in all (one TLog per 8)
  const ref = new RefDisk();
  ref.resize(SIZE);
  await ok(t, `truncate -s ${SIZE} ${q(a.p('disk'))}`);
  const fh = await open(a.p('disk'), 'r+');
  let clusters = 0;
  for (let op = 0; clusters < TLOGS * SCO_CLUSTERS; op++) {
    const n = Math.min(1 + Math.floor(random() * SCO_CLUSTERS), TLOGS * SCO_CLUSTERS - clusters);
    const at = Math.floor(random() * (SIZE / CS - n)) * CS;
    const data = pattern(SEED, op, n * CS);
    await fh.write(data, 0, data.length, at);
    ref.write(at, data);
    clusters += n;
  }
  await fh.sync();
  await fh.close();

  // A ships everything and records the vDisk clean (the takeover is automatic then), and its checkpoints catch up
  const dir = (what: string) => onlyVDiskDir(c.backend.replace(/^file:\/\//, ''), what);
  await until('the vDisk recorded clean in etcd', async () => {
    const row = (await c.routers()).find((r) => r.name === 'ra') as unknown as { vdisks: Array<{ dtl: { dirty: boolean } | null }> } | undefined;
    return row !== undefined && row.vdisks.length === 1 && row.vdisks[0]!.dtl?.dirty === false;
  }, 120_000);
  await until('a map checkpoint within a period of the last TLog', () => {
    const tl = keyNumbers(dir('tlog'));
    const cp = keyNumbers(dir('checkpoint'));
    return cp.length > 0 && tl[tl.length - 1]! - cp[cp.length - 1]! <= CHECKPOINT_EVERY;
  }, 120_000);

  await a.kill9();
  // what the backend holds at the kill (B writes its fence, maybe a checkpoint, only once it takes over)
  const tlogs = keyNumbers(dir('tlog'));
  const checkpoints = keyNumbers(dir('checkpoint'));
  const newest = checkpoints[checkpoints.length - 1]!;
  const after = tlogs.filter((n) => n > newest).length;
  t.log(`at the kill: ${tlogs.length} TLogs in the backend, checkpoints at TLog ${checkpoints.join(', ')}; ${after} TLogs after the newest`);

  await until('B takes the vPool over', () => {
    if (!b.alive) throw new Error(`rb exited:\n${b.log}`);
    return logEntries(b.log, /^took vPool 'pool' over from router 'ra'/).length > 0;
  }, 60_000);
  const rebuilt = logEntries(b.log, /^vDisk rebuilt from the backend/);
  t.is(rebuilt.length, 1, b.log.slice(-4000));
  const r = rebuilt[0]!;
  t.log(`rb's rebuild: checkpoint ${String(r.checkpoint)}, ${String(r.replayedItems)} of ${String(r.chainItems)} chain items replayed, ${String(r.ms)} ms`);
  t.is(r.chainItems, tlogs.length, 'the chain is every TLog in the backend');
  t.regex(String(r.checkpoint), new RegExp(`/checkpoint/${newest.toString(16).padStart(16, '0')}$`), 'the newest checkpoint was loaded');
  t.is(r.replayedItems, after, 'only the TLogs after the newest checkpoint were replayed');
  t.true(after < tlogs.length / 2, `most of the history is in the checkpoint (${after} of ${tlogs.length} TLogs after it)`);

  // every byte through the new owner's mount
  const got = await open(b.p('disk'), 'r');
  const buf = Buffer.alloc(2 ** 20);
  for (let off = 0; off < SIZE; off += buf.length) {
    const { bytesRead } = await got.read(buf, 0, buf.length, off);
    t.is(bytesRead, buf.length);
    const want = ref.read(off, buf.length);
    if (!buf.equals(want)) {
      let i = 0;
      while (buf[i] === want[i]) i++;
      t.fail(`byte ${off + i} differs through rb's mount (seed ${SEED})`);
      break;
    }
  }
  await got.close();
  t.is(await b.stop(), 0);
});
