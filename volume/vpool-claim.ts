/**
 * Taking the vPool's claim at open (volume/claim/claim.ts) and what it means for the local state:
 *
 *   claim/state-id   a random id of this state directory (the claim names it: a restart of the same
 *                    state directory on the same host takes the claim back at once)
 *   claim/epoch      the claim epoch this state directory last held
 *
 * The local state (metadata store, write cache, read cache) is this router's view as of `claim/epoch`. If
 * the claim it replaces is not that epoch, another router served the vPool since: the local state is stale
 * (its unshipped writes were fenced out by that router) and is discarded; every vDisk is rebuilt from the
 * backend. A takeover from another state directory (not a restart) gives `fenceEpoch`: each rebuild then
 * writes the vDisk's fence (volume/datapath/formats/epoch-fence.ts) before serving. A restart while the backend is
 * unreachable serves its local state with a deferred claim (BackendClaim.deferred).
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { logger } from '../util/log.js';
import type { MetadataStore } from '../mds/types.js';
import type { BlobStore } from './backend/types.js';
import { BackendClaim } from './claim/claim.js';
import { isCode } from '../util/errors.js';

const log = logger('vpool');
const STATE_ID_KEY = 'claim/state-id';
const EPOCH_KEY = 'claim/epoch';

export interface TakenClaim {
  claim: BackendClaim;
  /** Set on a takeover from another state directory (see the header). */
  fenceEpoch?: number;
}

export async function claimVPool(backend: BlobStore, mds: MetadataStore, stateDir: string,
  opts: { router: string; leaseMs?: number; force?: boolean; settleMs?: number; ownerTag?: number }): Promise<TakenClaim> {
  let stateId = mds.get(STATE_ID_KEY)?.toString();
  if (stateId === undefined) {
    stateId = randomUUID();
    await mds.commit([{ key: STATE_ID_KEY, value: Buffer.from(stateId) }]);
  }
  const held = Number(mds.get(EPOCH_KEY)?.toString() ?? '0'); // none: a state from before claims, epoch 0
  const claimOpts = { router: opts.router, stateId, leaseMs: opts.leaseMs, force: opts.force, settleMs: opts.settleMs, ownerTag: opts.ownerTag };
  let claim: BackendClaim;
  try {
    claim = await BackendClaim.acquire(backend, claimOpts);
  } catch (err) {
    // a restart during a backend outage still mounts on its local state (docs/s3.md); nothing goes to the
    // backend until the claim is taken, and if another router held the vPool meanwhile this one is fenced
    if (!isCode(err, 'BACKEND') || !hasLocalState(mds)) throw err;
    log.warn('the backend is unreachable at start: serving from the local state; nothing is written to the backend until the claim on it is taken', {
      heldEpoch: held, error: (err as Error).message,
    });
    const deferred = BackendClaim.deferred(backend, claimOpts, held, async (c) => {
      await mds.commit([{ key: EPOCH_KEY, value: Buffer.from(String(c.epoch)) }]);
    });
    return { claim: deferred };
  }
  try {
    const before = claim.previous?.epoch ?? 0;
    // a claim this state directory held itself is never stale, even if a power cut took the commit of its
    // epoch below (between taking the claim and that commit): its unshipped writes are this router's own
    if (!claim.sameState && held !== before && hasLocalState(mds)) {
      log.warn('another router served this vPool since this state directory did: its local state is stale (writes it had not shipped were fenced out) and is discarded; every vDisk is rebuilt from the backend', {
        stateEpoch: held, replacedEpoch: before, replaced: claim.previous === null ? null : { router: claim.previous.router, host: claim.previous.host },
      });
      await mds.deletePrefix('');
      for (const dir of ['wc', 'rc']) fs.rmSync(path.join(stateDir, dir), { recursive: true, force: true });
    }
    await mds.commit([{ key: STATE_ID_KEY, value: Buffer.from(stateId) }, { key: EPOCH_KEY, value: Buffer.from(String(claim.epoch)) }]);
    return { claim, fenceEpoch: claim.sameState ? undefined : claim.epoch };
  } catch (err) {
    claim.stop();
    throw err;
  }
}

function hasLocalState(mds: MetadataStore): boolean {
  for (const [key] of mds.range('')) if (!key.startsWith('claim/')) return true;
  return false;
}
