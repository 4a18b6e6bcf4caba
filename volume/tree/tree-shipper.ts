/**
 * Ships the tree to the backend (`pool/tree/<epoch>.json`, the key of this router's claim epoch) shortly after each change (100 ms, or
 * 20× the last dump's time in a big tree), and removes the backend
 * objects of deleted vDisks. Both retry until the backend takes them; both survive a restart: the tree is
 * re-shipped on start, pending removals are recorded in the metadata store (`gc/<id>`).
 */
import type { BlobStore } from '../backend/types.js';
import type { MetadataStore } from '../../mds/types.js';
import { TREE_PREFIX, treeKey, vdiskPrefix } from '../datapath/formats/backend-layout.js';
import { withRetry } from '../backend/retry.js';
import { logger } from '../../util/log.js';
import type { TreeDump } from './tree.js';

const log = logger('tree-shipper');
/**
 * The wait after a change is at least this many times the last dump's time: the dump is O(nodes), so with a
 * fixed wait a long burst of creates in a big tree spent O(nodes) per 100 ms, O(nodes²) over the burst
 * (measured: 1 s of event loop while creating 6,000 vDisks). This keeps the shipper under ~5% of the loop.
 */
const DUMP_SHARE = 20;
/** `gc/<id>`: the backend objects of vDisk <id> are to be removed (a removed vDisk, or a clone a crash cut short). */
export const GC_PREFIX = 'gc/';

export class TreeShipper {
  private generation = 0;
  private shipped = 0;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly removals = new Set<Promise<void>>();

  private cleaned = false;
  /** How long the last dump of the tree took on the event loop (it grows with the tree). */
  private dumpMs = 0;

  /** `epoch`: the claim epoch this router holds (read at each ship); the tree goes to its own key (../datapath/formats/backend-layout.ts). */
  constructor(private readonly backend: BlobStore, private readonly mds: MetadataStore, private readonly dump: () => TreeDump,
    private readonly epoch: () => number, private readonly delayMs = 100) {}

  /** The tree changed: ship it soon. */
  changed(): void {
    this.generation++;
    if (this.timer === null && !this.stopped) {
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.ship();
      }, Math.max(this.delayMs, DUMP_SHARE * this.dumpMs));
    }
  }

  /** Ships now (if anything changed) and waits until the backend has the latest tree. */
  async flush(): Promise<void> {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.shipped < this.generation) await this.ship();
  }

  /** Records and starts the removal of a vDisk's backend objects. */
  async removeVDisk(id: string): Promise<void> {
    await this.mds.commit([{ key: GC_PREFIX + id, value: Buffer.from('1') }]);
    this.startRemoval(id);
  }

  /** Resumes removals interrupted by a restart. */
  resume(): void {
    for (const [key] of this.mds.range(GC_PREFIX)) this.startRemoval(key.slice(GC_PREFIX.length));
  }

  async waitRemovals(): Promise<void> {
    while (this.removals.size > 0) await Promise.all([...this.removals]);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private ship(): Promise<void> {
    if (this.running !== null) return this.running;
    const gen = this.generation;
    const t0 = performance.now();
    const body = Buffer.from(JSON.stringify(this.dump()));
    this.dumpMs = performance.now() - t0;
    let key = '';
    const put = () => {
      key = treeKey(this.epoch()); // a deferred claim (volume/claim/claim.ts) gets its epoch while a put waits
      return this.backend.put(key, body);
    };
    this.running = withRetry(put, { what: 'ship the tree', log, cancelled: () => this.stopped })
      .then(async () => {
        this.shipped = Math.max(this.shipped, gen);
        if (!this.cleaned) await this.dropOlderTrees(key);
      })
      .catch((err) => {
        log.error('the tree could not be shipped', { error: String(err) });
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  /** Once our tree is in the backend, the trees of older epochs are history (best effort). */
  private async dropOlderTrees(mine: string): Promise<void> {
    this.cleaned = true;
    try {
      // (pool/tree.json, from before claims, stays: only a build without claims reads it)
      for (const key of await this.backend.list(TREE_PREFIX)) if (key < mine) await this.backend.delete(key);
    } catch (err) {
      log.debug('removing the trees of older claim epochs failed; left for the next start', { error: String(err) });
    }
  }

  private startRemoval(id: string): void {
    const p = (async () => {
      const keys = await withRetry(() => this.backend.list(vdiskPrefix(id)), { what: `list vDisk ${id} for removal`, log, cancelled: () => this.stopped });
      for (const key of keys) await withRetry(() => this.backend.delete(key), { what: `remove ${key}`, log, cancelled: () => this.stopped });
      await this.mds.commit([{ key: GC_PREFIX + id, value: null }]);
      log.info('backend objects of a removed vDisk deleted', { vdisk: id, objects: keys.length });
    })()
      .catch((err) => {
        log.warn('removal of a vDisk from the backend interrupted; resumed at the next start', { vdisk: id, error: String(err) });
      })
      .finally(() => {
        this.removals.delete(p);
      });
    this.removals.add(p);
  }
}
