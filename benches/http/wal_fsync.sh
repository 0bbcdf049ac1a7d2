#!/bin/bash
# The log's syncs under an open-loop run, on small segments so that it
# rotates (onto prepared spares, or onto sparse segments before them).
#
#   benches/http/wal_fsync.sh BINARY PORT RATE
#
# Fresh durable server with `--segment-mib 4`, 10,000 wallets set up, then
# 8 s open loop at RATE. Prints p50/p99, fsyncs per second, mean fsync
# (settle_wal_fsync_seconds), records per fsync, and the CPU the log thread
# (`settle-wal`) used per fsync.
set -euo pipefail
BIN=$1; PORT=$2; RATE=$3
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT" --segment-mib 4
wal_cpu() { awk '{print $14+$15}' "$(grep -lx settle-wal /proc/$SP/task/*/comm | sed 's/comm$/stat/')"; }
"$BIN" load --url "$U" --data-dir "$D" --duration 1s --wallets 10000 --json > /dev/null 2>&1
s0=$(metric settle_wal_fsync_seconds_sum); c0=$(metric settle_wal_fsync_seconds_count)
r0=$(metric settle_wal_batch_records_sum); w0=$(wal_cpu)
"$BIN" load --url "$U" --data-dir "$D" --connections 64 --duration 8s --rate "$RATE" --wallets 100 \
  --json > "$D/load.json" 2>/dev/null
s1=$(metric settle_wal_fsync_seconds_sum); c1=$(metric settle_wal_fsync_seconds_count)
r1=$(metric settle_wal_batch_records_sum); w1=$(wal_cpu)
python3 - "$D/load.json" "$s0" "$s1" "$c0" "$c1" "$r0" "$r1" "$w0" "$w1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); l = j["latencyMicros"]
s0, s1, c0, c1, r0, r1, w0, w1, hz = map(float, sys.argv[2:])
n = c1 - c0
print("p50 %.2f p99 %.2f ms; fsyncs/s %.0f, mean fsync %.3f ms, records/fsync %.1f, log thread CPU/fsync %.0f us" % (
    l["p50"] / 1e3, l["p99"] / 1e3, n / 8, (s1 - s0) / n * 1e3, (r1 - r0) / n, (w1 - w0) / hz * 1e6 / n))
PY
