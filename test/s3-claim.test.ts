/**
 * The claim on S3 (docs/cluster.md), against a real Ceph radosgw started for this file:
 * - the store's createExclusive (PutObject with If-None-Match: *): of concurrent creates of one key exactly
 *   one wins and its bytes stay; a create over an existing object is refused and changes nothing;
 * - two routers on one S3 backend, real daemons (helpers/claim-scenarios.ts): refusal naming the holder,
 *   takeover after kill -9 once the lease expired, --force; the zombie (SIGSTOP, takeover, SIGCONT).
 */
import { openBlobStore } from '../volume/backend/index.js';
import { fuseTest } from './helpers/mount.js';
import { useS3Server } from './helpers/s3-server.js';
import { refusalAndTakeover, zombie } from './helpers/claim-scenarios.js';

const test = fuseTest();
const s3 = useS3Server('claim');
let bucket = 0;
const s3Backend = () => s3.url(`claim${++bucket}`, 'vp');

test('createExclusive on radosgw: one of 8 concurrent creates wins, its bytes stay; an existing object is never replaced', async (t) => {
  const store = await openBlobStore(s3.url('excl', 'x'));
  t.teardown(() => store.close());
  t.truthy(store.createExclusive, 'the S3 store offers createExclusive');
  for (let round = 0; round < 5; round++) {
    const key = `pool/claim/${round}`;
    const results = await Promise.all([...Array(8).keys()].map((i) => store.createExclusive!(key, Buffer.from(`writer ${i}`))));
    const winners = results.flatMap((ok, i) => (ok ? [i] : []));
    t.is(winners.length, 1, `round ${round}: ${JSON.stringify(results)}`);
    t.is((await store.get(key)).toString(), `writer ${winners[0]}`);
    t.false(await store.createExclusive!(key, Buffer.from('late')));
    t.is((await store.get(key)).toString(), `writer ${winners[0]}`);
  }
});

test('S3: a second router is refused naming the holder; after kill -9 it takes over once the lease expired; --force takes over at once', (t) => refusalAndTakeover(t, s3Backend));

test('S3 zombie: a router paused and resumed after a takeover changes nothing the new holder serves', (t) => zombie(t, s3Backend));
