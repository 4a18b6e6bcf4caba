/**
 * Follower routers (docs/cluster.md, "Followers"): router A owns the vPool, router B mounts it as a follower and
 * forwards every FUSE handler call to A over the router link (real etcd, real daemons and mounts, real TCP).
 * - one namespace: a seeded random sequence of mkdir / create / rename / unlink / rmdir / data writes / user
 *   xattrs / snapshot xattrs, each on A or B, every result (errno included) compared with a plain model, and at
 *   checkpoints the tree, the data, the xattrs and the snapshot lists read through both mounts compared with it
 *   (VPOOLFS_SEED replays; VPOOLFS_FOLLOWER_OPS sets the length). Names are never reused once removed: the
 *   kernel may trust a name it saw up to the follower's entry timeout (1 s, the documented bound);
 * - concurrent creates of one name on A and B: exactly one succeeds, the other gets EEXIST;
 * - `router list` shows A as owner and B as follower;
 * - forwarded I/O: fio --verify from B's mount on a vDisk owned by A, then read back through A.
 * - the link refuses: a follower with another secret (its calls answer EIO after peerWaitMs, both logs say why),
 *   garbage bytes, a frame that is not the handshake, a call with bad arguments after a right handshake: each
 *   connection closed with a log line, and A serves on.
 */
import { randomBytes } from 'node:crypto';
import { constants as FS, writeFileSync } from 'node:fs';
import { open, readdir, readFile, rename, mkdir, rmdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecutionContext } from 'ava';
import { fuseTest, logEntries, MountHandle, ok, q, sh, startMount } from './helpers/mount.js';
import { cluster } from './helpers/registry.js';
import { fioVerifyCommand } from './helpers/fio-verify.js';
import { pattern } from './helpers/ref-disk.js';
import { LinkClient } from '../router-link/client.js';
import { encodeFrame, encodeFrameParts } from '../dtl-client/frame.js';
import { encodeMessage, Link, LINK_MAGIC } from '../router-link/wire.js';
import { seeded } from './helpers/seed.js';

const test = fuseTest();
const FILE_SIZE = 65536;

interface Node {
  kind: 'file' | 'dir';
  data?: Buffer;
  xattr?: string;
  snapshots?: string[];
}

const errnoOf = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? String(err);

/** The tree under `dir` as path → kind (readdir is never cached by the kernel). */
async function walk(dir: string, rel = ''): Promise<Map<string, 'file' | 'dir'>> {
  const out = new Map<string, 'file' | 'dir'>();
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const p = `${rel}/${e.name}`;
    out.set(p, e.isDirectory() ? 'dir' : 'file');
    if (e.isDirectory()) for (const [k, v] of await walk(dir, p)) out.set(k, v);
  }
  return out;
}

async function snapshotsOf(file: string): Promise<string[]> {
  const r = await sh(`getfattr -n user.vdisk.snapshots --only-values ${q(file)}`);
  if (r.code !== 0) throw new Error(`getfattr user.vdisk.snapshots ${file}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Array<{ name: string }>).map((s) => s.name).sort();
}

/** Every path, kind, data, user.v and snapshot list through `m`, compared with the model. */
async function checkView(t: ExecutionContext, m: MountHandle, model: Map<string, Node>, what: string): Promise<void> {
  const seen = await walk(m.mountpoint);
  t.deepEqual([...seen.entries()].sort(), [...model.entries()].map(([p, n]) => [p, n.kind]).sort(), `${what}: the tree through ${m.mountpoint}`);
  for (const [p, n] of model) {
    if (n.kind !== 'file') continue;
    const data = await readFile(m.p(p));
    t.true(data.equals(n.data!), `${what}: the data of ${p} through ${m.mountpoint}`);
    const x = await sh(`getfattr -n user.v --only-values ${q(m.p(p))}`);
    t.is(x.code === 0 ? x.stdout : null, n.xattr ?? null, `${what}: user.v of ${p} through ${m.mountpoint}`);
    t.deepEqual(await snapshotsOf(m.p(p)), [...(n.snapshots ?? [])].sort(), `${what}: the snapshots of ${p}`);
  }
}

test('one namespace through the owner and a follower: a seeded model of tree, data, xattr and snapshot operations on either router', async (t) => {
  const { seed, rand: r } = seeded(t);
  const ops = Number(process.env.VPOOLFS_FOLLOWER_OPS ?? 80);
  t.log(`${ops} operations`);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)];
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra'));
  const b = await startMount(t, c.router('rb'));
  t.true(logEntries(b.log, 'ready', { role: 'follower', owner: 'ra' }).length === 1, b.log);
  const rows = await c.routers();
  t.deepEqual(rows.map((x) => [x.name, x.state, x.role, x.vpool]), [['ra', 'alive', 'owner', 'pool'], ['rb', 'alive', 'follower', 'pool']]);
  t.regex(await c.routerTable(), /^rb\s+alive\s+follower\s+pool\s/m);

  const model = new Map<string, Node>();
  /** Removed directories (a name once removed is never created again). */
  const retired = new Set<string>();
  let fresh = 0;
  const dirs = () => ['', ...[...model].filter(([, n]) => n.kind === 'dir').map(([p]) => p)];
  const files = () => [...model].filter(([, n]) => n.kind === 'file').map(([p]) => p);
  const parentOf = (p: string) => p.slice(0, p.lastIndexOf('/'));
  const childrenOf = (p: string) => [...model.keys()].filter((k) => k.startsWith(`${p}/`));
  /**
   * A parent for a new name: mostly one that exists, sometimes a removed directory (ENOENT; a removed file is not
   * used: a router that still trusts the name, within its entry timeout, would answer ENOTDIR).
   */
  const parent = () => (retired.size > 0 && r() < 0.1 ? pick([...retired]) : pick(dirs()));
  const expectNew = (p: string): string => (parentOf(p) === '' || model.get(parentOf(p))?.kind === 'dir' ? 'ok' : model.has(parentOf(p)) ? 'ENOTDIR' : 'ENOENT');
  let steps = 0;
  const run = async (desc: string, want: string, op: () => Promise<unknown>): Promise<boolean> => {
    let got = 'ok';
    try {
      await op();
    } catch (err) {
      got = errnoOf(err);
    }
    steps++;
    t.is(got, want, `step ${steps}: ${desc} (seed ${seed})`);
    return got === 'ok';
  };

  for (let i = 0; i < ops; i++) {
    const m = r() < 0.5 ? a : b;
    const on = m === a ? 'A' : 'B';
    const kind = r();
    if (kind < 0.15) {
      const p = `${parent()}/d${fresh++}`;
      const want = expectNew(p);
      if (await run(`mkdir ${p} on ${on}`, want, () => mkdir(m.p(p)))) model.set(p, { kind: 'dir' });
    } else if (kind < 0.35) {
      const p = `${parent()}/f${fresh++}`;
      const want = expectNew(p);
      const created = await run(`create ${p} on ${on}`, want, async () => {
        const fh = await open(m.p(p), FS.O_CREAT | FS.O_EXCL | FS.O_RDWR);
        try {
          await fh.truncate(FILE_SIZE);
        } finally {
          await fh.close();
        }
      });
      if (created) model.set(p, { kind: 'file', data: Buffer.alloc(FILE_SIZE) });
    } else if (kind < 0.42 && model.size > 0) {
      const p = pick([...model.keys()]);
      const isDir = model.get(p)!.kind === 'dir';
      await run(`exclusive ${isDir ? 'mkdir' : 'create'} of the existing ${p} on ${on}`, 'EEXIST', () => (isDir ? mkdir(m.p(p)) : open(m.p(p), FS.O_CREAT | FS.O_EXCL | FS.O_RDWR).then((fh) => fh.close())));
    } else if (kind < 0.52 && model.size > 0) {
      const p = pick([...model.keys()]);
      const n = model.get(p)!;
      if (n.kind === 'file') {
        if (await run(`unlink ${p} on ${on}`, 'ok', () => unlink(m.p(p)))) model.delete(p);
      } else {
        const want = childrenOf(p).length > 0 ? 'ENOTEMPTY' : 'ok';
        if (await run(`rmdir ${p} on ${on}`, want, () => rmdir(m.p(p)))) {
          model.delete(p);
          retired.add(p);
        }
      }
    } else if (kind < 0.62 && files().length > 0) {
      const from = pick(files());
      const to = `${pick(dirs())}/r${fresh++}`;
      if (await run(`rename ${from} → ${to} on ${on}`, 'ok', () => rename(m.p(from), m.p(to)))) {
        model.set(to, model.get(from)!);
        model.delete(from);
      }
    } else if (kind < 0.85 && files().length > 0) {
      // a 4 KiB write on one router, the whole file read back through the other one
      const p = pick(files());
      const off = Math.floor(r() * (FILE_SIZE / 4096)) * 4096;
      const bytes = pattern(seed, i, 4096);
      await run(`write 4 KiB at ${off} of ${p} on ${on}`, 'ok', async () => {
        const fh = await open(m.p(p), FS.O_RDWR);
        try {
          await fh.write(bytes, 0, 4096, off);
        } finally {
          await fh.close();
        }
      });
      bytes.copy(model.get(p)!.data!, off);
      const other = m === a ? b : a;
      t.true((await readFile(other.p(p))).equals(model.get(p)!.data!), `step ${steps}: ${p} read back through the other router (seed ${seed})`);
    } else if (kind < 0.93 && files().length > 0) {
      const p = pick(files());
      const v = `v${i}`;
      await run(`setfattr user.v=${v} on ${p} on ${on}`, 'ok', async () => {
        const res = await sh(`setfattr -n user.v -v ${v} ${q(m.p(p))}`);
        if (res.code !== 0) throw Object.assign(new Error(res.stderr), { code: `setfattr exit ${res.code}: ${res.stderr.trim()}` });
      });
      model.get(p)!.xattr = v;
    } else if (files().length > 0) {
      const p = pick(files());
      const name = `s${i}`;
      await run(`snapshot ${name} of ${p} on ${on}`, 'ok', async () => {
        const res = await sh(`setfattr -n user.vdisk.snapshot -v ${name} ${q(m.p(p))}`);
        if (res.code !== 0) throw Object.assign(new Error(res.stderr), { code: `setfattr exit ${res.code}: ${res.stderr.trim()}` });
      });
      const n = model.get(p)!;
      n.snapshots = [...(n.snapshots ?? []), name];
      t.true((await snapshotsOf((m === a ? b : a).p(p))).includes(name), `step ${steps}: snapshot ${name} listed through the other router`);
    }
    if ((i + 1) % 40 === 0) {
      await checkView(t, a, model, `after ${i + 1} operations`);
      await checkView(t, b, model, `after ${i + 1} operations`);
    }
  }
  await checkView(t, a, model, 'at the end');
  await checkView(t, b, model, 'at the end');
  t.log(`${steps} operations on A and B; ${model.size} nodes at the end`);

  // concurrent creates of one name on both routers: one wins, the other gets EEXIST
  for (let round = 0; round < 8; round++) {
    const name = `race${round}`;
    const res = await Promise.all([a, b].map((m) => sh(`python3 -c 'import os, sys; os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY)' ${q(m.p(name))}`)));
    const wins = res.filter((x) => x.code === 0).length;
    t.is(wins, 1, `round ${round}: ${JSON.stringify(res)}`);
    t.regex(res.find((x) => x.code !== 0)?.stderr ?? '', /FileExistsError: \[Errno 17\] File exists/, `round ${round}`);
  }
  // the owner stops cleanly, then the follower, which may be taking the vPool over meanwhile: both exit 0
  t.is(await a.stop(), 0);
  t.is(await b.stop(), 0, b.log.split('\n').filter((l) => !l.includes('"debug"')).slice(-30).join('\n'));
});

test('forwarded I/O: fio --verify from the follower on a vDisk owned by the owner; the data reads back through the owner', async (t) => {
  const c = await cluster(t);
  const a = await startMount(t, c.router('ra'));
  const b = await startMount(t, c.router('rb'));
  t.true(logEntries(b.log, 'ready', { role: 'follower' }).length === 1, b.log);
  for (const job of [{ name: 'rw4k', rw: 'randwrite', bs: '4k', direct: 1, size: '16M' }, { name: 'seq128k', rw: 'write', bs: '128k', direct: 0, size: '32M' }] as const) {
    await ok(t, fioVerifyCommand(b.mountpoint, job, false), 240_000);
    // the same bytes through the owner's own mount, and through the follower again
    await ok(t, fioVerifyCommand(a.mountpoint, job, true), 240_000);
    const [sa, sb] = await Promise.all([a, b].map((m) => ok(t, `sha256sum < ${q(m.p(job.name))}`)));
    t.is(sa, sb, job.name);
  }
  // the owner served the vDisks: they are its own in the registry
  let rows = await c.routers();
  while (rows.find((x) => x.name === 'ra')?.vdisks.length !== 2) {
    await sleep(100);
    rows = await c.routers();
  }
  t.is(rows.find((x) => x.name === 'rb')?.vdisks.length, 0);
  t.is(await b.stop(), 0);
  t.is(await a.stop(), 0);
});

/**
 * How a client sees the owner closing its connection: an orderly close, or a reset when the owner closed with
 * bytes of the client's still unread (the bad frame's tail) — both are the refusal.
 */
const CLOSED = /closed the connection|ECONNRESET|EPIPE/;

test('the router link refuses a wrong secret, garbage, a frame out of turn and a call with bad arguments; the owner serves on', async (t) => {
  const c = await cluster(t);
  const secret = path.join(c.root, 'link.secret');
  const wrong = path.join(c.root, 'wrong.secret');
  writeFileSync(secret, randomBytes(24).toString('hex'));
  writeFileSync(wrong, randomBytes(24).toString('hex'));
  const a = await startMount(t, c.router('ra', ['--peer-secret-file', secret]));
  await ok(t, `head -c 64K /dev/urandom > ${q(a.p('disk'))}`);
  const want = await ok(t, `sha256sum < ${q(a.p('disk'))}`);
  const address = (await c.routers()).find((x) => x.name === 'ra')!.address!;
  t.regex(address, /^127\.0\.0\.1:\d+$/);

  // a follower with another secret: mounted, but its calls wait, then EIO; both sides say why
  const b = new MountHandle(c.router('rb', ['--peer-secret-file', wrong], { peerWaitMs: 1500 }));
  t.teardown(() => b.stop(30_000).then(() => undefined));
  while (logEntries(b.log, /^cannot reach the router link of router 'ra'/).length === 0) {
    if (!b.alive) t.fail(`the follower exited:\n${b.log}`);
    await sleep(100);
  }
  const st = await sh(`stat ${q(b.p('disk'))}`);
  t.not(st.code, 0);
  t.regex(st.stderr, /Input\/output error/);
  t.true(logEntries(b.log, /^cannot reach the router link of router 'ra'/).some((e) => /does not know the shared secret|refused the shared secret|closed the connection/.test(String(e.error))), b.log);
  t.true(logEntries(b.log, /^EIO: the vPool's owner has been unreachable for 1500 ms/).length > 0, b.log);
  t.true(logEntries(a.log, /^closing a router link connection: wrong secret/).length > 0, a.log);
  t.is(await b.stop(), 0);

  const [host, port] = [address.split(':')[0], Number(address.split(':')[1])];
  const raw = async (bytes: Buffer): Promise<void> => {
    const s = net.connect({ host, port });
    s.on('error', () => undefined);
    s.resume(); // the Hello is read (and dropped): else the end of the stream is never seen
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    s.write(bytes);
    await new Promise<void>((resolve) => s.once('close', () => resolve()));
  };
  // garbage: a bad magic
  await raw(randomBytes(64));
  t.true(logEntries(a.log, /^closing a router link connection: bad frame magic/).length > 0, a.log);
  // a call before the handshake
  await raw(encodeFrame(Link.Call, 1, Buffer.concat(encodeMessage('getattr', ['/disk'])), LINK_MAGIC));
  t.true(logEntries(a.log, /^closing a router link connection: expected the authentication message first/).length > 0, a.log);
  // a right handshake, then calls that do not fit their signatures: the connection closes, nothing runs
  const secretBytes = Buffer.from((await readFile(secret, 'utf8')).trim());
  for (const [op, args, why] of [['write', ['/disk', 1, 'not a buffer', 4, 0], /argument 3 is not of kind buf/], ['read', ['/disk', 1, null, 2 ** 31, 0], /read of \d+ bytes/], ['no-such-op', [], /unknown operation/], ['getattr', ['relative'], /argument 1 is not of kind path/]] as const) {
    const client = await LinkClient.connect({ address, secret: secretBytes, vpool: 'pool' });
    const res = await client.call(op, [...args]).then(() => 'answered', (err: Error) => err.message);
    t.regex(res, CLOSED, `${op}`);
    t.true(logEntries(a.log, /^closing a router link connection: a bad call/).some((e) => why.test(String(e.message))), `${op}: ${a.log.slice(-2000)}`);
  }
  // a truncated frame body with a right handshake: a checksum mismatch closes it too
  const client = await LinkClient.connect({ address, secret: secretBytes, vpool: 'pool' });
  const bad = Buffer.concat(encodeFrameParts(Link.Call, 9, encodeMessage('getattr', ['/disk']), LINK_MAGIC));
  bad[bad.length - 1] ^= 0xff;
  (client as unknown as { sock: net.Socket }).sock.write(bad);
  const gone = await client.call('getattr', ['/disk']).then(() => 'answered', (err: Error) => err.message);
  t.regex(gone, CLOSED);
  t.true(logEntries(a.log, /^closing a router link connection: frame checksum mismatch/).length > 0);
  // a well-behaved client is served, and the owner's mount never noticed
  const good = await LinkClient.connect({ address, secret: secretBytes, vpool: 'pool' });
  const attr = await good.call('getattr', ['/disk']);
  t.is(attr.code, 0);
  t.is((attr.values[0] as { size: number }).size, 65536);
  good.close();
  t.is(await ok(t, `sha256sum < ${q(a.p('disk'))}`), want);
  t.true(a.alive);
  t.is(await a.stop(), 0);
});
