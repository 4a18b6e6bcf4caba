#!/usr/bin/env bash
# Installs everything vpoolfs needs on a fresh Debian machine, then builds.
# Idempotent: each step is skipped when its result is already there.
# Not here: the real S3 server (Ceph radosgw, ~260 MB) that the S3 tests and `npm run bench:upload` use;
# tools/s3-server/start.sh installs it on first use (docs/s3.md), so `npm start` stays small.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v fusermount >/dev/null 2>&1 || need_pkgs+=(fuse)
[ -e /usr/lib/x86_64-linux-gnu/libfuse.so.2 ] || ldconfig -p 2>/dev/null | grep -q 'libfuse.so.2' || need_pkgs+=(libfuse2)
command -v setfattr >/dev/null 2>&1 || need_pkgs+=(attr)
command -v fio >/dev/null 2>&1 || need_pkgs+=(fio)
command -v qemu-img >/dev/null 2>&1 || need_pkgs+=(qemu-utils)
command -v xfs_io >/dev/null 2>&1 || need_pkgs+=(xfsprogs)
# fs-xattr (the CLI's xattr calls) is built from source by node-gyp at npm ci: a compiler, make, python3
{ command -v g++ && command -v make && command -v python3; } >/dev/null 2>&1 || need_pkgs+=(g++ make python3)
# NBD clients for the nbd-* tests: nbdinfo, nbdcopy, nbdsh, and libnbd's Python binding for the system python3
command -v nbdinfo >/dev/null 2>&1 || need_pkgs+=(libnbd-bin)
# (-I: not from the current directory, whose own nbd/ folder, the project's NBD server, imports as an empty package)
/usr/bin/python3 -I -c 'import nbd; nbd.NBD' >/dev/null 2>&1 || need_pkgs+=(python3-libnbd)
# etcd (3.4) for the registry tests: each starts a private one on loopback (test/helpers/etcd.ts)
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)
# etcdctl (etcd's auth for test/registry-tls.test.ts) and openssl (its certificates)
command -v etcdctl >/dev/null 2>&1 || need_pkgs+=(etcd-client)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
# ip (network namespaces, veth, bridges) for test/follower-netns.test.ts; nsenter comes with util-linux
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_pkgs[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install ${need_pkgs[*]} (apt-get)" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need_pkgs[@]}" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq "${need_pkgs[@]}" >&2; }
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi

echo "setup: build" >&2
rm -rf dist
npx tsc -p tsconfig.json >&2
