/**
 * util/stale-confirmation.ts, in memory: the check before an acknowledgement shared by the vPool owner
 * (registry/router-session.ts ackCheck) and a delegated vDisk (volume/claim/vdisk-gate.ts beforeAck) — each
 * branch of the rule, then the gate wired to it (two acknowledgements asking at once share one confirmation).
 * Through real routers: cluster-netns-owner-late-ack, cluster-netns-vdisk-zombie.
 */
import test from 'ava';
import { checkBeforeAck, type AckConfirmation } from '../util/stale-confirmation.js';
import { VDiskGate } from '../volume/claim/vdisk-gate.js';
import { isCode } from '../util/errors.js';

/** A confirmation the test settles by hand; `runs` counts how often it was asked. */
function deferred(): { promise: Promise<void>; settle: () => void; runs: number } {
  let settle!: () => void;
  const d = { promise: new Promise<void>((r) => { settle = r; }), settle: () => settle(), runs: 0 };
  return d;
}

const NOW = 10_000;
const LOST = new Error('lost: router rc owns it now');

interface Row {
  name: string;
  lostBefore: boolean;
  failing: boolean;
  validUntil: number;
  /** what the confirmation finds: lost, held, or it never answers */
  confirms: 'lost' | 'held' | 'hangs';
  /** null: nothing to wait for; else how the returned promise settles */
  expect: null | 'resolves' | 'rejects';
  confirmRuns: number;
}

const rows: Row[] = [
  { name: 'lost already: refused without asking', lostBefore: true, failing: false, validUntil: -Infinity, confirms: 'held', expect: 'rejects', confirmRuns: 0 },
  { name: 'lost already wins over a failing registry', lostBefore: true, failing: true, validUntil: -Infinity, confirms: 'held', expect: 'rejects', confirmRuns: 0 },
  { name: 'lost already wins over a fresh confirmation', lostBefore: true, failing: false, validUntil: NOW + 1, confirms: 'held', expect: 'rejects', confirmRuns: 0 },
  { name: 'registry failing: let through without asking', lostBefore: false, failing: true, validUntil: -Infinity, confirms: 'lost', expect: null, confirmRuns: 0 },
  { name: 'fresh confirmation: nothing to do', lostBefore: false, failing: false, validUntil: NOW + 1, confirms: 'lost', expect: null, confirmRuns: 0 },
  { name: 'stale at its very end: confirmed first, held', lostBefore: false, failing: false, validUntil: NOW, confirms: 'held', expect: 'resolves', confirmRuns: 1 },
  { name: 'never confirmed: confirmed first, held', lostBefore: false, failing: false, validUntil: -Infinity, confirms: 'held', expect: 'resolves', confirmRuns: 1 },
  { name: 'stale: the confirmation finds it lost, refused', lostBefore: false, failing: false, validUntil: NOW - 1, confirms: 'lost', expect: 'rejects', confirmRuns: 1 },
  { name: 'stale: the confirmation does not answer within waitMs, let through', lostBefore: false, failing: false, validUntil: NOW - 1, confirms: 'hangs', expect: 'resolves', confirmRuns: 1 },
];

for (const row of rows) {
  test(`checkBeforeAck: ${row.name}`, async (t) => {
    let lost = row.lostBefore;
    let runs = 0;
    const c: AckConfirmation = {
      lost: () => (lost ? LOST : null),
      failing: row.failing,
      validUntil: row.validUntil,
      confirm: () => {
        runs++;
        if (row.confirms === 'hangs') return new Promise<void>(() => {});
        if (row.confirms === 'lost') lost = true;
        return Promise.resolve();
      },
      waitMs: 20,
    };
    // the bound's timer is unref'ed (a pending check keeps no process alive): with a confirmation that never
    // answers, nothing else would keep this worker's event loop going until it fires
    const alive = setInterval(() => {}, 1000);
    t.teardown(() => clearInterval(alive));
    const p = checkBeforeAck(c, NOW);
    if (row.expect === null) t.is(p, null);
    else if (row.expect === 'resolves') await t.notThrowsAsync(p!);
    else t.is(await t.throwsAsync(p!), LOST);
    t.is(runs, row.confirmRuns, 'confirmations asked');
  });
}

test('checkBeforeAck: two acknowledgements asking at once wait for the same confirmation, both refused when it finds it lost', async (t) => {
  let lost = false;
  const d = deferred();
  let inFlight: Promise<void> | null = null;
  const confirm = (): Promise<void> => {
    inFlight ??= (d.runs++, d.promise.then(() => { lost = true; }));
    return inFlight;
  };
  const c = (): AckConfirmation => ({ lost: () => (lost ? LOST : null), failing: false, validUntil: -Infinity, confirm, waitMs: 60_000 });
  const a = checkBeforeAck(c(), NOW);
  const b = checkBeforeAck(c(), NOW);
  t.not(a, null);
  t.not(b, null);
  let settled = 0;
  void a!.catch(() => {}).finally(() => settled++);
  void b!.catch(() => {}).finally(() => settled++);
  await new Promise((r) => setImmediate(r));
  t.is(settled, 0, 'neither is answered before the confirmation');
  d.settle();
  t.is(await t.throwsAsync(a!), LOST);
  t.is(await t.throwsAsync(b!), LOST);
  t.is(d.runs, 1, 'one confirmation for both');
});

test('VDiskGate.beforeAck on the shared rule: stale and held, registry failing, two at once sharing one confirmation, lost; fresh', async (t) => {
  const answers: Array<() => Promise<{ validMs: number } | { lost: string }>> = [];
  let asked = 0;
  // no start(): its timer would confirm on its own; each confirmation here is asked by the test or by beforeAck
  const gate = new VDiskGate('v1', 'rb', 7, () => { asked++; return answers.shift()!(); }, 600_000);

  answers.push(async () => ({ validMs: 0 })); // held, but the lease may expire at once: stale from then on
  const first = gate.beforeAck('write');
  t.not(first, null, 'never confirmed: confirms first');
  await t.notThrowsAsync(first!, 'still this router\'s');
  t.is(asked, 1);

  answers.push(async () => { throw new Error('etcd unreachable'); });
  await gate.confirm();
  t.is(gate.beforeAck('fsync'), null, 'the registry does not answer: let through');
  t.is(asked, 2);

  answers.push(async () => ({ validMs: 0 })); // answers again, stale
  await gate.confirm();
  const d = deferred();
  answers.push(async () => { d.runs++; await d.promise; return { lost: 'the record names ra' }; });
  const a = gate.beforeAck('write');
  const b = gate.beforeAck('discard');
  t.not(a, null);
  t.not(b, null);
  d.settle();
  const ea = await t.throwsAsync(a!);
  const eb = await t.throwsAsync(b!);
  t.true(isCode(ea, 'FENCED') && isCode(eb, 'FENCED'), `${ea?.message} / ${eb?.message}`);
  t.regex(ea!.message, /^write: not acknowledged/);
  t.regex(eb!.message, /^discard: not acknowledged/);
  t.is(d.runs, 1, 'the two acknowledgements shared one confirmation');
  t.is(asked, 4);
  t.is(gate.fenced, 'the record names ra');

  const c = gate.beforeAck('resize');
  t.not(c, null);
  t.true(isCode(await t.throwsAsync(c!), 'FENCED'), 'lost: refused at once');
  t.is(asked, 4, 'without asking again');

  const fresh = new VDiskGate('v2', 'rb', 7, async () => ({ validMs: 600_000 }), 600_000);
  await fresh.confirm();
  t.is(fresh.beforeAck('write'), null, 'confirmed within half the TTL (5 minutes here): nothing to wait for');
});
