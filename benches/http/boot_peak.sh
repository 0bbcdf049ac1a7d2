#!/bin/bash
# Peak memory and time of one start-up on an existing data directory.
#
#   benches/http/boot_peak.sh BINARY DATA_DIR PORT
#
# Starts `BINARY serve` on DATA_DIR (made earlier, e.g. by `settle serve
# --snapshot-interval 0` and `settle load --wallets 1000000 --requests 10`,
# with or without a snapshot taken), waits until /healthz answers, and prints
# the start-up time, VmHWM and VmRSS then, the state digest, and VmHWM after
# GET /v1/admin/digest and /v1/admin/audit; then stops the server (SIGTERM).
# Alternate binaries on the same directory to compare them.
set -euo pipefail
BIN=$1; DATA=$2; PORT=$3
U="http://127.0.0.1:$PORT"
KEY=$(cat "$DATA/admin.key")
LOG=$(mktemp)
t0=$(date +%s.%N)
"$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" --snapshot-interval 0 > "$LOG" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null; wait $SP 2>/dev/null; rm -f "$LOG"' EXIT
until curl -sf "$U/healthz" > /dev/null; do
  kill -0 $SP 2>/dev/null || { echo "the server exited:"; tail -20 "$LOG"; exit 1; }
  sleep 0.1
done
t1=$(date +%s.%N)
mb() { awk -v k="$1" '$1==k":"{printf "%d", $2/1024}' "/proc/$SP/status"; }
hwm=$(mb VmHWM); rss=$(mb VmRSS)
digest=$(curl -sf "$U/v1/admin/digest" -H "X-API-KEY: $KEY" | sed 's/.*"digest":"\([0-9a-f]*\)".*/\1/')
curl -sf "$U/v1/admin/audit" -H "X-API-KEY: $KEY" > /dev/null
printf '%s boot=%.1fs hwm_at_ready=%dMB rss_at_ready=%dMB hwm_after_digest_and_audit=%dMB digest=%.16s\n' \
  "$(basename "$BIN")" "$(echo "$t1 - $t0" | bc)" "$hwm" "$rss" "$(mb VmHWM)" "$digest"
