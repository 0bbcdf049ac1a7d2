#!/bin/bash
# p99 per second of an open-loop run while wallets idle since set-up are
# passivated (about 30 s after their last use, `idle_after`).
#
#   benches/http/stall_passivation.sh BINARY PORT IDLE_WALLETS
#
# Fresh durable server; IDLE_WALLETS wallets created and funded by one short
# `settle load`, then 40 s open loop at 2,000 requests/s over 2,000 other
# wallets: the passivation of the idle ones falls ~25 s into it. Prints run
# p50/p99/max, "second:p99/max" (ms) per second, and the wallet gauges.
set -euo pipefail
BIN=$1; PORT=$2; N=$3
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT" --snapshot-interval 3600
"$BIN" load --url "$U" --data-dir "$D" --requests 1000 --wallets "$N" --json > /dev/null 2>&1
"$BIN" load --url "$U" --data-dir "$D" --duration 40s --warmup 1s --wallets 2000 --rate 2000 \
  --connections 32 --json > "$D/load.json" 2>/dev/null
python3 "$(dirname "$0")/timeline.py" "$D/load.json"
curl -s "$U/metrics" | grep -E "^settle_wallets_(active|passivated)"
