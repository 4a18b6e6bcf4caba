#!/usr/bin/env bash
# Stops what tools/s3-server/start.sh started, by the PIDs recorded in $S3_DIR/pids only, and removes
# $S3_DIR (KEEP_DATA=1 keeps it, logs included).
#   tools/s3-server/stop.sh        every daemon (radosgw, OSD, mon), then the directory
#   tools/s3-server/stop.sh rgw    only radosgw, with SIGKILL (a backend outage; `start.sh rgw` brings it back)
set -uo pipefail
S3_DIR=${S3_DIR:-/tmp/vpoolfs-s3}
PIDS=$S3_DIR/pids
[ -f "$PIDS" ] || { echo "s3-server: nothing to stop ($PIDS missing)" >&2; exit 0; }
if [ "${1:-all}" = rgw ]; then
  while read -r pid name; do
    [ "$name" = rgw.a ] || continue
    kill -KILL "$pid" 2>/dev/null && echo "s3-server: KILL $name ($pid)" >&2
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  done <"$PIDS"
  grep -v ' rgw\.a$' "$PIDS" >"$PIDS.new" || true
  mv "$PIDS.new" "$PIDS"
  exit 0
fi
tac "$PIDS" | while read -r pid name; do
  kill -TERM "$pid" 2>/dev/null && echo "s3-server: TERM $name ($pid)" >&2
done
for _ in $(seq 50); do
  alive=0
  while read -r pid _; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$PIDS"
  [ $alive = 0 ] && break
  sleep 0.2
done
while read -r pid name; do
  kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; echo "s3-server: KILL $name ($pid)" >&2; }
done <"$PIDS"
rm -f "$PIDS"
[ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$S3_DIR"
exit 0
