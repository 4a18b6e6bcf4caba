/**
 * A seeded workload through a real mount for the policy-update tests (fuse-rekey, fuse-move): random unaligned
 * writes with an fsync each, snapshots and a clone through the management API, and the reference of every
 * vDisk and of every snapshot taken (`ref`, `snaps`) to check them against at the end. Both tests run a
 * background job of the daemon (GET `route` shows it, `counter` its objects done) through the same phases:
 * I/O until the job is a third done, then kill -9 (`untilThirdDone`); I/O while the resumed job runs
 * (`whileRunning`); every vDisk and snapshot read back from a fresh state directory (`checkEveryByte`).
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { api, pathParam, type apiOf } from './api.js';
import { ok, q } from './mount.js';
import { pattern } from './vpool.js';

export class MountWorkload {
  /** vDisk name → its expected bytes. */
  readonly ref = new Map<string, Buffer>();
  /** Every snapshot taken, with the bytes its vDisk had then. */
  readonly snaps: Array<{ file: string; name: string; data: Buffer }> = [];
  private n = 0;

  constructor(private readonly t: ExecutionContext, private readonly rand: () => number, private readonly target: ReturnType<typeof apiOf>, readonly size: number) {}

  /** One write of 512 B to 40 KiB at a random 512-byte offset of `file`, fsynced. */
  write(mountpoint: string, file: string): void {
    const data = this.ref.get(file)!;
    const off = Math.floor(this.rand() * (this.size / 512 - 100)) * 512;
    const chunk = pattern(Math.floor(this.rand() * 2 ** 31), 512 * (1 + Math.floor(this.rand() * 80)));
    const fd = fs.openSync(path.join(mountpoint, file), 'r+');
    fs.writeSync(fd, chunk, 0, chunk.length, off);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    chunk.copy(data, off);
  }

  async snapshot(file: string): Promise<void> {
    const name = `s${++this.n}`;
    const a = await api(this.target, 'POST', `/v1/vdisks/${pathParam(file)}/snapshots`, { name });
    this.t.is(a.status, 201, JSON.stringify(a.body));
    this.snaps.push({ file, name, data: Buffer.from(this.ref.get(file)!) });
  }

  /** The starting state: d1 and d2 written, each with a snapshot in the middle, c1 a clone of d1's written too. */
  async populate(mountpoint: string): Promise<void> {
    for (const f of ['d1', 'd2']) {
      await ok(this.t, `truncate -s ${this.size} ${q(path.join(mountpoint, f))}`);
      this.ref.set(f, Buffer.alloc(this.size));
      for (let i = 0; i < 12; i++) this.write(mountpoint, f);
      await this.snapshot(f);
      for (let i = 0; i < 12; i++) this.write(mountpoint, f);
    }
    const c = await api(this.target, 'POST', `/v1/vdisks/${pathParam('d1')}/clones`, { target: 'c1', snapshot: this.snaps[0].name });
    this.t.is(c.status, 201, JSON.stringify(c.body));
    this.ref.set('c1', Buffer.from(this.snaps[0].data));
    for (let i = 0; i < 6; i++) this.write(mountpoint, 'c1');
  }

  /** What the job's route says (GET). */
  private async job(route: string): Promise<Record<string, any>> {
    return (await api(this.target, 'GET', route)).body;
  }

  /**
   * Writes (a snapshot every 10th) on `mountpoint` while the job at `route` runs, until its `counter` passes a
   * third of `objects`; the job must still be running then (the caller kills the daemon half-way).
   */
  async untilThirdDone(mountpoint: string, route: string, counter: string, objects: number): Promise<{ job: Record<string, any>; writes: number }> {
    let st = await this.job(route);
    let writes = 0;
    while (st.job.state === 'running' && st.job[counter] < objects / 3) {
      this.write(mountpoint, ['d1', 'd2', 'c1'][writes % 3]);
      if (++writes % 10 === 0) await this.snapshot(['d1', 'd2'][(writes / 10) % 2]);
      await sleep(50);
      st = await this.job(route);
    }
    this.t.is(st.job.state, 'running', `the job was still running at the kill: ${JSON.stringify(st.job)}`);
    return { job: st.job, writes };
  }

  /** Writes on `mountpoint` while the job at `route` runs (at most 30): how many. */
  async whileRunning(mountpoint: string, route: string): Promise<number> {
    let more = 0;
    while ((await this.job(route)).job.state === 'running' && more < 30) {
      this.write(mountpoint, ['d1', 'd2', 'c1'][more % 3]);
      more++;
      await sleep(100);
    }
    return more;
  }

  /** Every vDisk reads as its reference on `mountpoint`, and every snapshot through a clone of it. */
  async checkEveryByte(mountpoint: string): Promise<void> {
    for (const [f, data] of this.ref) this.t.true(fs.readFileSync(path.join(mountpoint, f)).equals(data), `${f}: every byte`);
    for (const s of this.snaps) {
      const v = `v-${s.name}`;
      const a = await api(this.target, 'POST', `/v1/vdisks/${pathParam(s.file)}/clones`, { target: v, snapshot: s.name });
      this.t.is(a.status, 201, JSON.stringify(a.body));
      this.t.true(fs.readFileSync(path.join(mountpoint, v)).equals(s.data), `${s.file}@${s.name}: every byte`);
    }
  }
}
