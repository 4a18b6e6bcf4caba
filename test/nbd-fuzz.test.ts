/**
 * A bounded fuzz of the NBD server while real clients work: seeded raw connections (test/helpers/nbd-raw.ts)
 * send random bytes, handshakes with random flags, valid and mutated option streams, and mutated requests
 * (random commands, flags, offsets, lengths, payloads, truncation) to their own export, for as long as a
 * libnbd model run (random operations checked against a plain reference) and fio (nbd engine, crc32c verify)
 * write and verify other exports. Both must pass, the daemon must stay up and stop cleanly (exit 0).
 * Seed printed; VPOOLFS_SEED replays the model run and the fuzz stream (how the four fuzz connections interleave
 * with it varies from run to run); VPOOLFS_NBD_ROUNDS lengthens the run.
 */
import { truncate, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fuseTest } from './helpers/mount.js';
import { nbdScript, ok, q, sh, startNbdMount } from './helpers/nbd.js';
import { RawNbd, u32 } from './helpers/nbd-raw.js';
import { seeded } from './helpers/seed.js';

const test = fuseTest();
const MiB = 2 ** 20;
const FUZZ_SIZE = 8 * MiB;

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const bytes = (r: Rand, n: number) => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = int(r, 256);
  return b;
};
const pick = <T>(r: Rand, xs: T[]): T => xs[int(r, xs.length)]!;

/** Flips a few random bytes of `b` (a copy). */
function mutate(r: Rand, b: Buffer): Buffer {
  const out = Buffer.from(b);
  for (let k = int(r, 3) + 1; k > 0 && out.length > 0; k--) out[int(r, out.length)] = int(r, 256);
  return out;
}

function option(r: Rand): Buffer {
  const name = Buffer.from(pick(r, ['fuzz.img', '', 'nope', '../x', 'fuzz.img/', '/fuzz.img']));
  const opt = pick(r, [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 99, 0, 2 ** 31]);
  const data = pick(r, [
    Buffer.alloc(0),
    Buffer.concat([u32(name.length), name, Buffer.from([0, 1, 0, 3])]),
    Buffer.concat([u32(name.length), name, u32(2), u32(15), Buffer.from('base:allocation'), u32(5), Buffer.from('base:')]),
    bytes(r, int(r, 64)),
  ]);
  const frame = Buffer.concat([Buffer.from('IHAVEOPT'), u32(opt), u32(data.length), data]);
  return r() < 0.3 ? mutate(r, frame) : frame;
}

function request(r: Rand): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(pick(r, [0, 0, 1, 2, 4, 8, 16, int(r, 65536)]), 4);
  const type = pick(r, [0, 0, 1, 1, 3, 4, 5, 6, 7, 8, 9, int(r, 65536)]);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(BigInt(int(r, 2 ** 32)), 8);
  h.writeBigUInt64BE(BigInt(pick(r, [int(r, FUZZ_SIZE), FUZZ_SIZE - 4096, FUZZ_SIZE, int(r, 2 ** 52)])), 16);
  const length = pick(r, [0, 1, 4096, int(r, 65536), 32 * MiB, 32 * MiB + 1, int(r, 2 ** 32)]);
  h.writeUInt32BE(length, 24);
  // a write's payload: all of it when small, else a part (the server sees a truncated or oversized one)
  const payload = type === 1 ? bytes(r, Math.min(length, pick(r, [65536, int(r, 8192)]))) : Buffer.alloc(0);
  const frame = Buffer.concat([r() < 0.1 ? mutate(r, h) : h, payload]);
  return r() < 0.05 ? frame.subarray(0, int(r, frame.length)) : frame;
}

/** One fuzz connection; resolves when it is over (the server closed it, or this side gave up). */
async function fuzzOne(sock: string, r: Rand): Promise<void> {
  const c = await RawNbd.connect(sock);
  try {
    const scenario = int(r, 4);
    if (scenario === 0) c.write(bytes(r, int(r, 200)));
    else if (scenario === 1) {
      await c.read(18);
      c.write(Buffer.concat([u32(pick(r, [0, 1, 2, 3, 4, int(r, 2 ** 32)])), bytes(r, int(r, 100))]));
    } else if (scenario === 2) {
      await c.greet();
      for (let k = int(r, 6) + 1; k > 0; k--) c.write(option(r));
    } else {
      await c.go('fuzz.img');
      for (let k = int(r, 20) + 1; k > 0; k--) c.write(request(r));
    }
    await Promise.race([c.closed, sleep(20 + int(r, 200))]);
  } catch {
    // the server closed it under us: that is one of the answers
  } finally {
    c.destroy();
  }
}

test('fuzz the NBD server while libnbd and fio write and verify', async (t) => {
  const n = await startNbdMount(t);
  for (const [f, size] of [['fuzz.img', FUZZ_SIZE], ['model.img', 32 * MiB], ['fio.img', 64 * MiB]] as const) {
    await writeFile(n.m.p(f), '');
    await truncate(n.m.p(f), size);
  }
  const { seed, rand: r } = seeded(t); // the model and the fuzz stream
  const rounds = Number(process.env.VPOOLFS_NBD_ROUNDS ?? 3000);
  t.log(`${rounds} model rounds`);

  let clientsDone = false;
  const model = nbdScript('nbd_model.py', [n.sock, 'model.img', 32 * MiB, seed, rounds, n.m.p('model.img')]);
  const fio = sh(`fio --minimal --name=v --ioengine=nbd --uri=${q(n.uri('fio.img'))} --size=64M --rw=randwrite --bs=4k --iodepth=8 `
    + '--verify=crc32c --verify_fatal=1 --verify_state_save=0 --do_verify=1 --loops=2', { timeoutMs: 600_000 });
  const clients = Promise.all([model, fio]).finally(() => (clientsDone = true));
  let conns = 0;
  const fuzzers = Array.from({ length: 4 }, async () => {
    while (!clientsDone) {
      await fuzzOne(n.sock, r);
      conns++;
    }
  });
  const [m, f] = await clients;
  await Promise.all(fuzzers);
  t.log(`${conns} fuzz connections`);
  t.is(m.code, 0, `libnbd model (seed ${seed}):\n${m.stdout}\n${m.stderr}`);
  t.is(f.code, 0, `fio verify:\n${f.stdout}\n${f.stderr}`);
  t.true(conns > 0);
  t.regex(n.m.log, /NBD (protocol error|handshake failed)/, 'the fuzz was seen and refused');
  const errors = n.m.log.split('\n').filter((l) => l.includes('"level":"error"'));
  t.deepEqual(errors, [], 'no error-level log line (an unexpected exception, an uncaught one)');
  await ok(t, `qemu-io -f raw -c 'write -P 0x77 0 64k' -c 'read -P 0x77 0 64k' ${q(n.uri('fuzz.img'))}`);
  t.true(n.m.alive);
  t.is(await n.m.stop(), 0, 'a clean stop after the fuzz');
});
