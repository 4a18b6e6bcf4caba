/**
 * The zombie with a registry on file:// (the scenario: helpers/registry-zombie.ts): router A paused past its
 * registry lease, B takes over through the registry and writes, A resumes cut off from etcd and ships late
 * uploads; none changes what B serves; A is fenced when etcd is back.
 */
import { fuseTest } from './helpers/mount.js';
import { registryZombie } from './helpers/registry-zombie.js';

const test = fuseTest();

test('zombie: a router paused past its registry lease and resumed after a takeover changes nothing the new owner serves', (t) => registryZombie(t));
