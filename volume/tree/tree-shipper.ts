/**
 * Ships the tree to the backend (`pool/tree.json`) shortly after each change, and removes the backend
 * objects of deleted vDisks. Both retry until the backend takes them; both survive a restart: the tree is
 * re-shipped on start, pending removals are recorded in the metadata store (`gc/<id>`).
 */
import type { BlobStore } from '../backend/types.js';
import type { MetadataStore } from '../../mds/types.js';
import { TREE_KEY, vdiskPrefix } from '../datapath/backend-layout.js';
import { withRetry } from '../backend/retry.js';
import { logger } from '../../util/log.js';
import type { TreeDump } from './tree.js';

const log = logger('tree-shipper');
/** `gc/<id>`: the backend objects of vDisk <id> are to be removed (a removed vDisk, or a clone a crash cut short). */
export const GC_PREFIX = 'gc/';

export class TreeShipper {
  private generation = 0;
  private shipped = 0;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly removals = new Set<Promise<void>>();

  constructor(private readonly backend: BlobStore, private readonly mds: MetadataStore, private readonly dump: () => TreeDump, private readonly delayMs = 100) {}

  /** The tree changed: ship it soon. */
  changed(): void {
    this.generation++;
    if (this.timer === null && !this.stopped) {
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.ship();
      }, this.delayMs);
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
    const body = Buffer.from(JSON.stringify(this.dump()));
    this.running = withRetry(() => this.backend.put(TREE_KEY, body), { what: 'ship the tree', log, cancelled: () => this.stopped })
      .then(() => {
        this.shipped = Math.max(this.shipped, gen);
      })
      .catch((err) => {
        log.error('the tree could not be shipped', { error: String(err) });
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
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
