/**
 * A vPool for power-cut tests, in this process: its write cache goes through a FaultyIo, its metadata
 * through a FaultyMds over one in-memory store that outlives the vPool (a resolved commit is durable, as
 * lmdb's is once flushed), its backend through a GatedStore over a file:// store. cut() is the power cut:
 * the running vPool is frozen (no call of it changes anything any more; it is abandoned, never closed),
 * every write-cache file keeps only what was fdatasynced, and open() starts the next "boot" on what is left.
 * Small SCOs (8 clusters) and TLogs (2 SCOs), nothing shipped by age, as in ./vpool.ts.
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemoryMetadataStore } from '../../mds/memory-store.js';
import { openBlobStore } from '../../volume/backend/index.js';
import type { BlobStore, ListOptions } from '../../volume/backend/types.js';
import type { VPool } from '../../volume/types.js';
import type { VPoolOptions } from '../../volume/vpool-options.js';
import { openVPool } from '../../volume/vpool.js';
import { FaultyIo } from './faulty-io.js';
import { FaultyMds } from './faulty-mds.js';
import { GatedStore } from './gated-store.js';

export interface Boot {
  pool: VPool;
  io: FaultyIo;
  mds: FaultyMds;
  backend: GatedStore;
}

/** A BlobStore that tells `onPut` about each put before passing it on (tests check invariants there). */
export class HookedStore implements BlobStore {
  onPut: (key: string, data: Uint8Array) => void = () => {};
  constructor(private readonly inner: BlobStore) {}
  get url(): string { return this.inner.url; }
  put(key: string, data: Uint8Array): Promise<void> {
    this.onPut(key, data);
    return this.inner.put(key, data);
  }
  get(key: string): Promise<Buffer> { return this.inner.get(key); }
  getRange(key: string, offset: number, length: number): Promise<Buffer> { return this.inner.getRange(key, offset, length); }
  head(key: string): Promise<{ size: number } | null> { return this.inner.head(key); }
  list(prefix: string, opts?: ListOptions): Promise<string[]> { return this.inner.list(prefix, opts); }
  delete(key: string): Promise<void> { return this.inner.delete(key); }
  close(): Promise<void> { return this.inner.close(); }
}

export interface PowerCutRig {
  root: string;
  state: string;
  /** The write-cache directory (`<state>/wc`). */
  wcDir: string;
  /** Opens the vPool on what the last power cut left (or fresh). */
  open(extra?: Partial<VPoolOptions>): Promise<Boot>;
  /** Sees every put of every boot to the backend. */
  puts: HookedStore['onPut'];
  /** Power cut of the running boot: freeze it, keep only what was fdatasynced. */
  cut(boot: Boot): void;
  /** kill -9 of the running boot: freeze it; the files keep everything written (the page cache survives). */
  kill(boot: Boot): void;
  /** A clean close of `boot`. */
  close(boot: Boot): Promise<void>;
}

export function powerCutRig(t: ExecutionContext, defaults: Partial<VPoolOptions> = {}): PowerCutRig {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vpoolfs-durable-'));
  const state = path.join(root, 'state');
  const wcDir = path.join(state, 'wc');
  const store = new MemoryMetadataStore();
  const live = new Set<Boot>();
  const shadow = new Map<number, Buffer>(); // what is on the disk, across boots
  t.teardown(async () => {
    for (const b of live) {
      b.backend.setFailing(false);
      b.backend.resume();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([b.pool.close().catch(() => undefined), new Promise((r) => { timer = setTimeout(r, 20_000); })]);
      clearTimeout(timer);
    }
    await store.close().catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  });
  const rig: PowerCutRig = {
    root, state, wcDir,
    puts: () => {},
    async open(extra = {}) {
      // one file:// store per boot: a vPool's close() closes its backend
      const fileStore: BlobStore = await openBlobStore(`file://${path.join(root, 'backend')}`);
      const io = new FaultyIo(shadow);
      const mds = new FaultyMds(store, true);
      const hooked = new HookedStore(fileStore);
      hooked.onPut = (key, data) => rig.puts(key, data);
      const backend = new GatedStore(hooked);
      const pool = await openVPool({
        name: 'test', stateDir: state, backend, metadataStore: mds, cacheIo: io, scoClusters: 8, tlogScos: 2,
        scoMaxAgeMs: 3_600_000, writeCacheBytes: 64 * 2 ** 20, readCacheBytes: 16 * 2 ** 20, ...defaults, ...extra,
      });
      const boot = { pool, io, mds, backend };
      live.add(boot);
      return boot;
    },
    cut(boot) {
      live.delete(boot);
      boot.io.freeze();
      boot.mds.freeze();
      boot.backend.pause();
      boot.io.powerCut(wcDir);
    },
    kill(boot) {
      live.delete(boot);
      boot.io.freeze();
      boot.mds.freeze();
      boot.backend.pause();
    },
    async close(boot) {
      live.delete(boot);
      await boot.pool.close();
    },
  };
  return rig;
}
