#!/bin/bash
# How the log's group commit behaves under one `settle load` run against a
# fresh durable server: fsyncs per second, records and requests per fsync,
# mean fsync time and the share of the run spent fsyncing (diffs of
# settle_wal_batch_records and settle_wal_fsync_seconds from /metrics).
#
#   benches/http/group_commit.sh BINARY PORT [settle load options...]
#   benches/http/group_commit.sh target/release/settle 18080 --rate 4500
#
# 10,000 wallets are set up first; the run itself is 8 s over 100 wallets.
set -euo pipefail
BIN=$1; PORT=$2; shift 2
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT" --fsync always
"$BIN" load --url "$U" --data-dir "$D" --duration 2s --wallets 10000 --json > /dev/null 2>&1
c0=$(metric settle_wal_batch_records_count); s0=$(metric settle_wal_batch_records_sum); f0=$(metric settle_wal_fsync_seconds_sum)
"$BIN" load --url "$U" --data-dir "$D" --duration 8s --wallets 100 "$@" --json > "$D/load.json" 2>/dev/null
c1=$(metric settle_wal_batch_records_count); s1=$(metric settle_wal_batch_records_sum); f1=$(metric settle_wal_fsync_seconds_sum)
python3 - "$D/load.json" "$c0" "$c1" "$s0" "$s1" "$f0" "$f1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
c0, c1, s0, s1, f0, f1 = map(float, sys.argv[2:])
ops, t = j["operations"], j["elapsedSecs"]
c, s, f = c1 - c0, s1 - s0, f1 - f0
print("ops/s %.0f  fsyncs/s %.0f  records/fsync %.1f  requests/fsync %.1f  fsync ms mean %.3f  fsync busy %.0f%%"
      % (ops / t, c / t, s / c, ops / c, f / c * 1e3, f / t * 100))
PY
