/**
 * The claim on S3 (docs/cluster.md), against a real Ceph radosgw started for this file (radosgw's
 * conditional create, PutObject with If-None-Match: *, is checked by the conformance suite, s3-store.test.ts):
 * - two routers on one S3 backend, real daemons (helpers/claim-scenarios.ts): refusal naming the holder,
 *   takeover after kill -9 once the lease expired, --force; the zombie (SIGSTOP, takeover, SIGCONT).
 */
import { fuseTest } from './helpers/mount.js';
import { useS3Server } from './helpers/s3-server.js';
import { refusalAndTakeover, zombie } from './helpers/claim-scenarios.js';

const test = fuseTest();
const s3 = useS3Server('claim');
let bucket = 0;
const s3Backend = () => s3.url(`claim${++bucket}`, 'vp');

test('S3: a second router is refused naming the holder; after kill -9 it takes over once the lease expired; --force takes over at once', (t) => refusalAndTakeover(t, s3Backend));

test('S3 zombie: a router paused and resumed after a takeover changes nothing the new holder serves', (t) => zombie(t, s3Backend));
