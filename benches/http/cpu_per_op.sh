#!/bin/bash
# Throughput, server CPU and log bytes per operation of one `settle load` run
# against a fresh durable server (both on this machine).
#
#   benches/http/cpu_per_op.sh BINARY PORT [settle load options...]
#   benches/http/cpu_per_op.sh target/release/settle 18080 --batch 1000 --connections 16
#
# Starts `BINARY serve --fsync ${FSYNC:-always} ${SERVE_OPTS}` on 127.0.0.1:PORT in a fresh
# data directory, sets up 10,000 funded wallets and warms up for 2 s, then
# measures ${DUR:-10s}. Server CPU comes from /proc/PID/stat (user + system),
# the load generator's from /usr/bin/time (user + system of the measured run),
# log bytes and records from /metrics (settle_wal_bytes_total,
# settle_wal_records_total). Prints one line.
set -euo pipefail
BIN=$1; PORT=$2; shift 2
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT" --fsync "${FSYNC:-always}" ${SERVE_OPTS:-}
cpu() { awk '{print $14+$15}' "/proc/$SP/stat"; }
"$BIN" load --url "$U" --data-dir "$D" --duration 2s --wallets 10000 "$@" --json > /dev/null
t0=$(cpu); b0=$(metric settle_wal_bytes_total); r0=$(metric settle_wal_records_total)
/usr/bin/time -f "%U %S" -o "$D/load.cpu" \
  "$BIN" load --url "$U" --data-dir "$D" --duration "${DUR:-10s}" --wallets 100 "$@" --json > "$D/load.json"
t1=$(cpu); b1=$(metric settle_wal_bytes_total); r1=$(metric settle_wal_records_total)
python3 - "$D/load.json" "$D/load.cpu" "$t0" "$t1" "$b0" "$b1" "$r0" "$r1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
lu, ls = map(float, open(sys.argv[2]).read().split()[-2:])
t0, t1, b0, b1, r0, r1, hz = map(float, sys.argv[3:])
ops, secs = j["operations"], j["elapsedSecs"]
print("ops/s=%.0f server_cpu_us/op=%.1f load_cpu_us/op=%.1f log_bytes/op=%.0f records/op=%.2f errors=%s conserved=%s" % (
    ops / secs, (t1 - t0) / hz * 1e6 / ops, (lu + ls) * 1e6 / ops, (b1 - b0) / ops, (r1 - r0) / ops,
    j["errorCount"], j["conserved"]))
PY
