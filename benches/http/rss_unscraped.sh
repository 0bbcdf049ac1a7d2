#!/bin/bash
# Resident memory of a server under `wrk` load on GET /healthz when no one
# scrapes /metrics: flat if the metrics upkeep runs, growing per request if not.
#
#   benches/http/rss_unscraped.sh BINARY PORT
set -euo pipefail
BIN=$1; PORT=$2
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT" --fsync never
rss() { awk '/VmRSS/{print $2}' /proc/$SP/status; }
echo "idle: $(rss) kB"
for i in 1 2 3 4 5 6; do
  n=$(wrk -t1 -c32 -d8s "$U/healthz" | awk '/requests in/{print $1}')
  echo "run $i: $n requests, rss $(rss) kB"
done
