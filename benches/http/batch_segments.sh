#!/bin/bash
# Batches at full rate, and whether the log's spare segments keep up: a
# fresh durable server, 10,000 wallets set up with 2 s of batches, then
# ${DUR:-8s} of `settle load --batch 1000 --connections 16` over 100 wallets.
# Prints the rate, the client's p99, and the segments the log started from
# a prepared spare and new (settle_wal_segments_total; a new one is sparse,
# and its fsyncs cost more).
#
#   benches/http/batch_segments.sh BINARY PORT
set -euo pipefail
BIN=$1; PORT=$2
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT" --fsync always
"$BIN" load --url "$U" --data-dir "$D" --duration 2s --wallets 10000 --batch 1000 --connections 16 --json > /dev/null 2>&1
"$BIN" load --url "$U" --data-dir "$D" --duration "${DUR:-8s}" --wallets 100 --batch 1000 --connections 16 --json > "$D/load.json" 2>/dev/null
python3 -c "
import json; j = json.load(open('$D/load.json'))
print('ops/s %.0f p99 %.1f ms' % (j['operations'] / j['elapsedSecs'], j['latencyMicros']['p99'] / 1e3), end=' | ')"
# A label never counted is absent from /metrics: 0.
spare=$(metric 'settle_wal_segments_total{from="spare"}'); new=$(metric 'settle_wal_segments_total{from="new"}')
echo "segments started: ${spare:-0} from a spare, ${new:-0} new"
