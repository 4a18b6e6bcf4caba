/**
 * `npm run bench:upload`: how fast the write cache drains to the backend (issue 6, "Speed"). In one run:
 *
 *   sdk PutObject   the reference: a plain loop of PutObjectCommand with @aws-sdk/client-s3, 4 MiB objects,
 *                   4 in flight (the uploader's concurrency), on the same S3 server
 *   store s3://     S3BlobStore.put, same objects, same concurrency          → ratio to sdk PutObject
 *   store s3+enc    EncryptedBlobStore over it                               → ratio to store s3://
 *   store file://   FileBlobStore.put (temp file, fsync, rename, dir fsync)
 *   store file+enc  EncryptedBlobStore over it                               → ratio to store file://
 *   vpool <backend> a vPool drains a vDisk: --size written into the write cache first, then the time
 *                   syncToBackend() takes (SCOs + TLogs + cork)              → ratio to the store's put loop
 *
 * The S3 server is a real Ceph radosgw (memstore) on loopback, started by tools/s3-server/start.sh and
 * stopped by PID at the end. Medians of --runs runs (default 3). No thresholds: figures on a busy 2-core
 * machine are noise; the load average is printed with them.
 *
 *   node dist/bench/vpool/upload.js [--size 64M] [--runs 3]
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { setLogLevel } from '../../util/log.js';
import { openBlobStore } from '../../volume/backend/index.js';
import { EncryptedBlobStore } from '../../volume/backend/encrypted-store.js';
import type { BlobStore } from '../../volume/backend/types.js';
import { openVPool } from '../../volume/vpool.js';
import { median } from '../shared/fio.js';

const MiB = 2 ** 20;
const OBJ = 4 * MiB;
const WIDTH = 4;
const SCRIPTS = fileURLToPath(new URL('../../../tools/s3-server', import.meta.url));

async function loop(count: number, put: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: WIDTH }, async () => {
    while (next < count) await put(next++);
  }));
  return (count * OBJ) / 1e6 / ((performance.now() - t0) / 1000);
}

async function storeRun(store: BlobStore, bodies: Buffer[], tag: string): Promise<number> {
  const mbs = await loop(bodies.length, (i) => store.put(`bench/${tag}/${i}`, bodies[i]!));
  for (let i = 0; i < bodies.length; i++) await store.delete(`bench/${tag}/${i}`);
  return mbs;
}

async function vpoolRun(backend: BlobStore, dir: string, size: number): Promise<number> {
  const pool = await openVPool({ name: 'bench', stateDir: dir, backend, writeCacheBytes: 2 * size + 64 * MiB, scoMaxAgeMs: 3_600_000 });
  await pool.createFile('/d', 0o644, 0, 0, 0);
  const v = pool.vdisk('/d');
  const buf = randomBytes(MiB);
  for (let off = 0; off < size; off += MiB) await v.write(off, buf);
  const t0 = performance.now();
  await v.syncToBackend();
  const mbs = size / 1e6 / ((performance.now() - t0) / 1000);
  await pool.close();
  return mbs;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { size: { type: 'string' }, runs: { type: 'string' } } });
  const size = Math.max(OBJ, Math.round(parseFloat(values.size ?? '64') * (/[gG]$/.test(values.size ?? '') ? 1024 : 1)) * MiB);
  const runs = Math.max(1, parseInt(values.runs ?? '3', 10));
  setLogLevel('error');
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-bench-upload-'));
  const s3dir = path.join(base, 's3');
  const env = { ...process.env, S3_DIR: s3dir, S3_PORT: String(27480 + (process.pid % 1000)), MON_PORT: String(23300 + 2 * (process.pid % 1000)) };
  process.stderr.write('bench: starting the S3 server (tools/s3-server/start.sh)\n');
  const out = execFileSync('bash', [path.join(SCRIPTS, 'start.sh')], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const vars = Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) process.env[k] = vars[k];
  const endpoint = vars.S3_ENDPOINT!;
  const s3url = (prefix: string) => `s3://bench/${prefix}?endpoint=${encodeURIComponent(endpoint)}&forcePathStyle=true&region=us-east-1`;
  const key = randomBytes(32);
  const results = new Map<string, number[]>();
  const record = (name: string, v: number) => results.set(name, [...(results.get(name) ?? []), v]);
  const loadBefore = os.loadavg();
  try {
    const s3 = new S3Client({
      endpoint, region: 'us-east-1', forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
      credentials: { accessKeyId: vars.AWS_ACCESS_KEY_ID!, secretAccessKey: vars.AWS_SECRET_ACCESS_KEY! },
    });
    const bodies = Array.from({ length: size / OBJ }, () => randomBytes(OBJ));
    const plain = await openBlobStore(s3url('store')); // creates the bucket
    // warm-up, not timed: connections opened, the server's first writes to its pools done
    await loop(WIDTH, (i) => s3.send(new PutObjectCommand({ Bucket: 'bench', Key: `warm/${i}`, Body: bodies[i % bodies.length] })));
    await storeRun(plain, bodies.slice(0, WIDTH), 'warm');
    for (let run = 1; run <= runs; run++) {
      process.stderr.write(`bench: run ${run}/${runs}\n`);
      record('sdk PutObject', await loop(bodies.length, (i) => s3.send(new PutObjectCommand({ Bucket: 'bench', Key: `sdk/${i}`, Body: bodies[i] }))));
      record('store s3://', await storeRun(plain, bodies, 's3'));
      record('store s3+enc', await storeRun(new EncryptedBlobStore(plain, key), bodies, 's3enc'));
      const fileDir = path.join(base, `file${run}`);
      const file = await openBlobStore(`file://${fileDir}`);
      record('store file://', await storeRun(file, bodies, 'file'));
      record('store file+enc', await storeRun(new EncryptedBlobStore(file, key), bodies, 'fileenc'));
      record('vpool s3://', await vpoolRun(await openBlobStore(s3url(`vp${run}`)), path.join(base, `st-s3-${run}`), size));
      record('vpool s3+enc', await vpoolRun(new EncryptedBlobStore(await openBlobStore(s3url(`vpe${run}`)), key), path.join(base, `st-s3e-${run}`), size));
      record('vpool file://', await vpoolRun(await openBlobStore(`file://${fileDir}-vp`), path.join(base, `st-f-${run}`), size));
      await file.close();
    }
    await plain.close();
    s3.destroy();
  } finally {
    execFileSync('bash', [path.join(SCRIPTS, 'stop.sh')], { env, stdio: 'inherit' });
    fs.rmSync(base, { recursive: true, force: true });
  }
  const m = (name: string) => median(results.get(name)!);
  const refs: Record<string, string> = {
    'store s3://': 'sdk PutObject', 'store s3+enc': 'store s3://', 'store file+enc': 'store file://',
    'vpool s3://': 'store s3://', 'vpool s3+enc': 'vpool s3://', 'vpool file://': 'store file://',
  };
  console.log(`upload to the backend: ${size / MiB} MiB in 4 MiB objects, ${WIDTH} in flight, median of ${runs} run(s)${runs < 3 ? ' (a smoke test, not a measurement)' : ''}`);
  console.log(`load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (2 cores: figures on a busy machine are noise)`);
  console.log(`${'what'.padEnd(16)} ${'MB/s'.padStart(8)}  ratio`);
  for (const name of results.keys()) {
    const ref = refs[name];
    const ratio = ref === undefined ? '' : `${(m(name) / m(ref)).toFixed(2)} × ${ref}`;
    console.log(`${name.padEnd(16)} ${m(name).toFixed(1).padStart(8)}  ${ratio}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
