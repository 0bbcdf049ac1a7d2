#!/bin/bash
# Resident memory a durable server gains per operation of a `settle load` run.
#
#   benches/http/rss_per_op.sh BINARY PORT [settle load options...]
#   benches/http/rss_per_op.sh target/release/settle 18650 --batch 1000 --connections 4 --requests 300
#
# Starts a fresh server, sets up 10,000 funded wallets with a short run
# (5 single requests), reads VmRSS, runs the given load (on 100 wallets of
# its own; give it --requests or --duration), reads VmRSS again, and prints
# the growth per operation.
set -euo pipefail
BIN=$1; PORT=$2; shift 2
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT"
rss() { awk '/VmRSS/{print $2}' "/proc/$SP/status"; }
"$BIN" load --url "$U" --data-dir "$D" --wallets 10000 --connections 1 --requests 5 > /dev/null
r0=$(rss)
"$BIN" load --url "$U" --data-dir "$D" --wallets 100 "$@" --json > "$D/load.json" 2>/dev/null
r1=$(rss)
python3 - "$D/load.json" "$r0" "$r1" <<'PY'
import json, sys
ops = json.load(open(sys.argv[1]))["operations"]
r0, r1 = int(sys.argv[2]), int(sys.argv[3])
print("rss_kB=%d->%d ops=%d rss_bytes/op=%.0f" % (r0, r1, ops, (r1 - r0) * 1024 / ops))
PY
