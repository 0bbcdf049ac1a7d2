#!/bin/bash
# Resident memory of a durable server holding many wallets opened over HTTP.
#
#   benches/http/rss_wallets.sh BINARY PORT WALLETS [serve options...]
#   benches/http/rss_wallets.sh target/release/settle 18660 1000000 --max-active 20000
#
# Starts a fresh server with the given options, opens and funds WALLETS
# wallets with `settle load --requests 10` (one request per wallet to open
# it, batches of 1,000 to fund it), then prints VmRSS and the wallet gauges
# every 10 s until every actor is passivated, takes a snapshot (printing the
# same every second while it is written, then the server's log lines of the
# snapshots), and prints the final figures. Lines: seconds since start, VmRSS MB, peak VmHWM MB,
# bytes allocated and not freed (MB; a `--features heap-stats` build only),
# active and passivated wallets, idempotency records.
set -euo pipefail
BIN=$1; PORT=$2; N=$3; shift 3
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT" "$@"
t0=$(date +%s)
mb() { awk -v k="$1" '$1==k":"{printf "%d", $2/1024}' "/proc/$SP/status"; }
line() {
  local live
  live=$(metric settle_heap_live_bytes)
  printf 't=%4ds rss=%5dMB hwm=%5dMB heap=%sMB active=%s passivated=%s idem=%s\n' \
    $(( $(date +%s) - t0 )) "$(mb VmRSS)" "$(mb VmHWM)" \
    "$([ -n "$live" ] && echo $(( ${live%.*} / 1048576 )) || echo -)" \
    "$(metric settle_wallets_active)" "$(metric settle_wallets_passivated)" \
    "$(metric settle_idempotency_records)"
}
"$BIN" load --url "$U" --data-dir "$D" --wallets "$N" --requests 10 > "$D/load.txt" 2>&1 &
LP=$!
while kill -0 $LP 2>/dev/null; do line; sleep 10; done
wait $LP || { cat "$D/load.txt"; exit 1; }
echo "set-up done"
line
while [ "$(metric settle_wallets_active)" != "0" ]; do sleep 10; line; done
# The snapshot's own peak, sampled every second while it is written.
curl -sf -X POST "$U/v1/admin/snapshots" -H "X-API-KEY: $(cat "$D/admin.key")" > "$D/snapshot.json" &
CP=$!
while kill -0 $CP 2>/dev/null; do sleep 1; line; done
if ! wait $CP; then
  echo "the snapshot failed:"; cat "$D/snapshot.json"; tail -20 "$D/serve.log"; exit 1
fi
echo "snapshot done"
grep -h "snapshot written" "$D/serve.log" | tail -3 || true
line
sleep 20
line
# Memory a finished thread freed goes back to the system as the allocator
# is next used, so an idle server keeps it until traffic comes.
for _ in $(seq 1 2000); do curl -s "$U/healthz" > /dev/null; done
echo "after 2,000 requests"
line
