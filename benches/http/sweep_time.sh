#!/bin/bash
# How long the gateway's sweep takes with 10,000 running wallet actors,
# under an open-loop run, and the client's latency meanwhile.
#
#   benches/http/sweep_time.sh BINARY PORT [RATE]
#
# A fresh durable server; 10,000 wallets are set up (all stay running: they
# idle for 30 s before passivation), then `settle load --rate RATE` (12,000)
# for 8 s over 100 of them. Prints the mean sweep (settle_sweep_seconds,
# over the run only) and the client's p50/p99/max.
set -euo pipefail
BIN=$1; PORT=$2; RATE=${3:-12000}
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT" --fsync always
"$BIN" load --url "$U" --data-dir "$D" --duration 1s --wallets 10000 --json > /dev/null 2>&1
s0=$(metric settle_sweep_seconds_sum); n0=$(metric settle_sweep_seconds_count)
"$BIN" load --url "$U" --data-dir "$D" --connections 64 --duration 8s --warmup 1s \
  --rate "$RATE" --wallets 100 --json > "$D/load.json" 2>/dev/null
s1=$(metric settle_sweep_seconds_sum); n1=$(metric settle_sweep_seconds_count)
python3 - "$D/load.json" "$s0" "$n0" "$s1" "$n1" <<'PY'
import json, sys
l = json.load(open(sys.argv[1]))["latencyMicros"]
s0, n0, s1, n1 = map(float, sys.argv[2:6])
print("sweeps %d, mean %.2f ms | client p50 %.1f p99 %.1f max %.1f ms" % (
    n1 - n0, (s1 - s0) * 1e3 / max(n1 - n0, 1), l["p50"] / 1e3, l["p99"] / 1e3, l["max"] / 1e3))
PY
