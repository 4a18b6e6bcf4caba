/**
 * Routers in network namespaces of their own, for the tests of issue 15's "real network": a Linux bridge that
 * only the test uses, the host's address `.1` on it (etcd, radosgw, a DTL server of the host listen there), and
 * per router a namespace (`ip netns`) with one end of a veth pair, the other end plugged into the bridge.
 * Addresses exist only on the bridge and in those namespaces (10.201.X.0/24, X random and unused here).
 *
 * - `bridgeForTest(t)`: a bridge made inside a test, deleted at its teardown (test/follower-netns.test.ts);
 * - `useBridge()`: one bridge for a whole test file, made in a `before` hook — before the radosgw of
 *   helpers/s3-server.ts starts, so that radosgw can listen on the bridge's address too — and deleted after;
 * - `bridge.router(t, name)`: a namespace for one router, deleted at that test's teardown; `prefix` runs a
 *   process in it (`nsenter --net`, which execs: the pid and the signals are the process's own), `cut()` takes
 *   its veth down (the router keeps running, cut off from everything on the bridge).
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { sh } from './mount.js';

export interface RouterNs {
  /** The router's name in the test (`ra`, …). */
  name: string;
  /** The namespace's name (`ip netns`). */
  ns: string;
  /** The router's address on the bridge. */
  ip: string;
  /** Run a process inside the namespace: `[...prefix, cmd, ...args]`. */
  prefix: string[];
  /** Takes the router's veth down: cut off from the bridge (and so from etcd, the backend, the other routers). */
  cut(): Promise<void>;
}

export class Bridge {
  readonly id = randomBytes(2).toString('hex');
  readonly name = `vpbr${this.id}`;
  private next = 2;
  private readonly net: number;

  constructor() {
    // a /24 no interface of this host has yet (other tests' bridges included)
    const used = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
    let net: number;
    do net = 1 + Math.floor(Math.random() * 250);
    while (used.includes(` 10.201.${net}.`));
    this.net = net;
  }

  /** The host's address on the bridge (`.1`). */
  get hostIp(): string {
    return `10.201.${this.net}.1`;
  }

  /** Makes the bridge (throws with the output when `ip` refuses). */
  async create(): Promise<void> {
    const r = await sh(`ip link add ${this.name} type bridge && ip addr add ${this.hostIp}/24 dev ${this.name} && ip link set ${this.name} up`);
    if (r.code !== 0) throw new Error(`cannot make bridge ${this.name}: ${r.stderr}`);
  }

  async destroy(): Promise<void> {
    await sh(`ip link del ${this.name} 2>/dev/null; true`);
  }

  /** A namespace for router `name` on this bridge, removed at `t`'s teardown. */
  async router(t: ExecutionContext, name: string): Promise<RouterNs> {
    const n = this.next++;
    if (n > 254) throw new Error('no address left on the bridge');
    const ns = `vpf-${this.id}-${n}`;
    const host = `vph${this.id}${n}`;
    const inside = `vpn${this.id}${n}`;
    const ip = `10.201.${this.net}.${n}`;
    t.teardown(async () => {
      // the veth goes explicitly: a namespace whose cut-off sockets still retransmit outlives its `ip netns del`
      await sh(`ip link del ${host} 2>/dev/null; ip netns del ${ns} 2>/dev/null; true`);
    });
    const r = await sh([
      `ip netns add ${ns}`, `ip link add ${host} type veth peer name ${inside}`, `ip link set ${inside} netns ${ns}`,
      `ip link set ${host} master ${this.name}`, `ip link set ${host} up`,
      `ip -n ${ns} addr add ${ip}/24 dev ${inside}`, `ip -n ${ns} link set ${inside} up`, `ip -n ${ns} link set lo up`,
    ].join(' && '));
    if (r.code !== 0) throw new Error(`cannot make the network namespace of router ${name}: ${r.stderr}`);
    return {
      name, ns, ip,
      prefix: ['nsenter', `--net=/run/netns/${ns}`],
      async cut() {
        const c = await sh(`ip -n ${ns} link set ${inside} down`);
        if (c.code !== 0) throw new Error(`cannot cut router ${name} off: ${c.stderr}`);
      },
    };
  }
}

/** A bridge for one test, deleted at its teardown (after the namespaces, which were registered later). */
export async function bridgeForTest(t: ExecutionContext): Promise<Bridge> {
  const b = new Bridge();
  t.teardown(() => b.destroy());
  await b.create();
  return b;
}

/** One bridge for the whole test file: made in a `before` hook (register it before useS3Server), deleted after. */
export function useBridge(): Bridge {
  const b = new Bridge();
  test.before(() => b.create());
  test.after.always(() => b.destroy());
  return b;
}
