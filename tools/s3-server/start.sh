#!/usr/bin/env bash
# Starts a throw-away real S3 server on 127.0.0.1 for the tests and benchmarks: a one-node Ceph cluster
# (1 mon, 1 memstore OSD, no mgr) with radosgw (beast). No systemd; every daemon runs in the foreground
# under setsid and its PID is recorded in $S3_DIR/pids, so stop.sh kills exactly those.
# Installs the Debian packages when missing (apt-get update only if the install fails); iproute2 (ss) is
# for the test that counts the connections of the keep-alive pool.
#
#   tools/s3-server/start.sh          start everything; prints the env lines (below) on stdout
#   tools/s3-server/start.sh rgw      start radosgw again in an existing $S3_DIR (after `stop.sh rgw`)
#
# Env: S3_DIR (default /tmp/vpoolfs-s3), S3_PORT (7480), MON_PORT (mon v2 port, 3300; v1 = +1),
#      S3_ACCESS_KEY, S3_SECRET_KEY, S3_ALSO_ON (another local address radosgw listens on too, same port:
#      a test bridge's address, for routers in network namespaces). Stdout: S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
#      AWS_REGION, S3_DIR (also written to $S3_DIR/s3.env). Logs: stderr and $S3_DIR/log/.
# Pitfalls solved here (see docs/s3.md): cephx is required (radosgw 16 never connects with auth none),
# a fast paxos interval (else every pool create costs ~1.2 s), one OSD with pool size 1 and pg_num 8.
set -euo pipefail
S3_DIR=${S3_DIR:-/tmp/vpoolfs-s3}
S3_PORT=${S3_PORT:-7480}
MON_PORT=${MON_PORT:-3300}
MON_V1=$((MON_PORT + 1))
S3_ACCESS_KEY=${S3_ACCESS_KEY:-vpoolfstestaccess}
S3_SECRET_KEY=${S3_SECRET_KEY:-vpoolfstestsecret0123456789abcdef}
MODE=${1:-all}
t0=$(date +%s.%N)
log() { echo "[s3-server +$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s] $*" >&2; }

start_bg() { # name cmd... : runs a daemon in the foreground (-f) in its own session, records "pid name"
  local name=$1; shift
  setsid "$@" >>"$S3_DIR/log/$name.stdout" 2>&1 </dev/null &
  echo "$! $name" >>"$S3_DIR/pids"
}

wait_rgw() {
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$S3_PORT/" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "s3-server: radosgw does not answer on 127.0.0.1:$S3_PORT; see $S3_DIR/log" >&2
  return 1
}

if [ "$MODE" = rgw ]; then
  [ -f "$S3_DIR/ceph.conf" ] || { echo "s3-server: no cluster in $S3_DIR" >&2; exit 1; }
  start_bg rgw.a radosgw -c "$S3_DIR/ceph.conf" -f -n client.rgw.a
  wait_rgw
  log "radosgw answering again"
  exit 0
fi

# Several test files may start servers at once on a cold machine: one installs, the others wait for it.
exec 9>/tmp/vpoolfs-s3-install.lock
flock 9
need=()
for b in ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw radosgw-admin:ceph-common ceph:ceph-common ceph-authtool:ceph-common monmaptool:ceph-base uuidgen:uuid-runtime curl:curl python3:python3-minimal ss:iproute2; do
  command -v "${b%%:*}" >/dev/null || need+=("${b#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >&2 \
    || { apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >&2; }
fi
flock -u 9; exec 9>&-

if [ -e "$S3_DIR/pids" ]; then
  echo "s3-server: $S3_DIR/pids exists; run tools/s3-server/stop.sh first" >&2; exit 1
fi
rm -rf "$S3_DIR"; mkdir -p "$S3_DIR"/{mon.a,osd.0,rgw,log,run,crash}
cd "$S3_DIR"
FSID=$(uuidgen)
CONF=$S3_DIR/ceph.conf
cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
mon warn on insecure global id reclaim allowed = false
keyring = $S3_DIR/keyring
run dir = $S3_DIR/run
admin socket = $S3_DIR/run/\$name.asok
pid file = $S3_DIR/run/\$name.pid
log file = $S3_DIR/log/\$name.log
mon cluster log file = $S3_DIR/log/cluster.log
crash dir = $S3_DIR/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
paxos propose interval = 0.05
paxos min wait = 0.01
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = memstore
memstore device bytes = 4294967296
osd memory target = 939524096
[mon]
mon data = $S3_DIR/mon.a
[osd]
osd data = $S3_DIR/osd.0
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$S3_PORT${S3_ALSO_ON:+ endpoint=$S3_ALSO_ON:$S3_PORT} tcp_nodelay=1
rgw data = $S3_DIR/rgw
rgw dns name = localhost
rgw thread pool size = 64
rgw enable usage log = false
EOF
# One keyring for every entity; ceph-mon --mkfs imports all of them into the auth database.
KR=$S3_DIR/keyring
ceph-authtool --create-keyring "$KR" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$KR" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$KR" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
ceph-authtool "$KR" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1]" "$S3_DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$S3_DIR/monmap" --keyring "$KR" >>"$S3_DIR/log/mon-mkfs.log" 2>&1

CEPH="ceph -c $CONF --connect-timeout 10"
start_bg mon.a ceph-mon -c "$CONF" -f -i a
for _ in $(seq 100); do $CEPH mon stat >/dev/null 2>&1 && break; sleep 0.2; done
$CEPH mon stat >/dev/null || { echo "s3-server: ceph-mon did not come up; see $S3_DIR/log" >&2; exit 1; }
log "mon ready"

OSD_UUID=$(uuidgen)
OSD_ID=$($CEPH osd new "$OSD_UUID")
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >>"$S3_DIR/log/osd-mkfs.log" 2>&1
start_bg "osd.$OSD_ID" ceph-osd -c "$CONF" -f -i "$OSD_ID"
for _ in $(seq 150); do
  [ "$($CEPH osd stat -f json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_up_osds"])' 2>/dev/null)" = 1 ] && break
  sleep 0.2
done
log "osd up"

start_bg rgw.a radosgw -c "$CONF" -f -n client.rgw.a
wait_rgw
radosgw-admin -c "$CONF" -n client.rgw.a user create --uid=vpoolfs --display-name=vpoolfs \
  --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >"$S3_DIR/user.json" 2>>"$S3_DIR/log/radosgw-admin.log"
log "radosgw answering, S3 user created: ready"
cat <<EOF | tee "$S3_DIR/s3.env"
S3_ENDPOINT=http://127.0.0.1:$S3_PORT
AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
AWS_REGION=us-east-1
S3_DIR=$S3_DIR
EOF
