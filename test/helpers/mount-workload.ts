/**
 * A seeded workload through a real mount for the policy-update tests (fuse-rekey, fuse-move): random unaligned
 * writes with an fsync each, snapshots and a clone through the management API, and the reference of every
 * vDisk and of every snapshot taken (`ref`, `snaps`) to check them against at the end.
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
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
}
