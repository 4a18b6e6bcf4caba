/**
 * Issue 15's takeover proof with three routers on a file:// backend, the faults other than kill -9: the
 * owner's network cut, and SIGSTOP then SIGCONT of the owner — the scenarios of the radosgw run
 * (cluster-netns-s3-faults.test.ts), shared in helpers/three-router-faults.ts; kill -9 on both backends:
 * cluster-netns-s3.test.ts. The backend is a directory every namespace sees (network namespaces only): the
 * network cut leaves A its backend, so what stops a cut-off A is the backend claim the taker takes from it
 * (docs/cluster.md, "The fence") besides the registry.
 */
import { fuseTest } from './helpers/mount.js';
import { useBridge } from './helpers/netns.js';
import { networkCut, stopAndResume } from './helpers/three-router-faults.js';

const test = fuseTest();
const bridge = useBridge();

test('three routers on file://: the owner\'s network cut under its writer (sync DTL): a follower takes over with every write acknowledged before the cut', (t) =>
  networkCut(t, bridge, {}));

test('three routers on file://: SIGSTOP of the owner under its writer (sync DTL): a follower takes over; the owner resumed is fenced and changes nothing', (t) =>
  stopAndResume(t, bridge, {}));
