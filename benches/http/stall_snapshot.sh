#!/bin/bash
# p99 per second of an open-loop run during which a snapshot is taken (or not).
#
#   benches/http/stall_snapshot.sh BINARY PORT RATE SNAPSHOT(1|0)
#
# Fresh durable server (periodic snapshots off), 20 s of closed-loop load over
# 50,000 wallets to build a log tail (~1.35M records), then 16 s open loop at
# RATE over 10,000 wallets; with SNAPSHOT=1 a snapshot is forced 10 s in.
# Prints run p50/p99/max, then "second:p99/max" (ms) for every second.
set -euo pipefail
BIN=$1; PORT=$2; RATE=$3; SNAP=$4
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT" --snapshot-interval 3600
"$BIN" load --url "$U" --data-dir "$D" --duration 20s --wallets 50000 --json > /dev/null 2>&1
"$BIN" load --url "$U" --data-dir "$D" --duration 16s --warmup 1s --wallets 10000 --rate "$RATE" \
  --connections 64 --json > "$D/load.json" 2>/dev/null &
LP=$!
if [ "$SNAP" = 1 ]; then
  sleep 10
  curl -s -X POST "$U/v1/admin/snapshots" -H "X-API-KEY: $(cat "$D/admin.key")" > /dev/null
fi
wait $LP
python3 "$(dirname "$0")/timeline.py" "$D/load.json"
grep -h "snapshot written" "$D/serve.log" | sed 's/\x1b\[[0-9;]*m//g; s/.*records_replayed/records_replayed/' || true
