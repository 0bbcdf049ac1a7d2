#!/usr/bin/env bash
# Durable HTTP transfers with wrk against a running `settle serve`:
#   SETTLE_ADMIN_KEY=... benches/http/run.sh [URL] [WALLETS] [SECONDS]
# Creates a client and WALLETS funded USD wallets, runs wrk (64 connections),
# then prints the audit (money must be conserved).
set -euo pipefail
url=${1:-http://127.0.0.1:8080}
n=${2:-200}
secs=${3:-8}
: "${SETTLE_ADMIN_KEY:?set SETTLE_ADMIN_KEY to the admin key of the server}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
j='Content-Type: application/json'
key=$(curl -sf -X POST "$url/v1/admin/clients" -H "X-API-KEY: $SETTLE_ADMIN_KEY" -H "$j" \
  -d '{"name":"bench"}' | sed -E 's/.*"apiKey":"([^"]+)".*/\1/')
wallets=$(mktemp)
trap 'rm -f "$wallets"' EXIT
for i in $(seq 1 "$n"); do
  w=$(curl -sf -X POST "$url/v1/wallets" -H "X-API-KEY: $key" -H "$j" \
    -H "X-IDEMPOTENCY-KEY: bench-w-$i-$$" -d '{"ccyCode":"USD"}' \
    | sed -E 's/^\{"data":\{"id":"([^"]+)".*/\1/')
  curl -sf -X POST "$url/v1/wallets/$w/credits" -H "X-API-KEY: $key" -H "$j" \
    -H "X-IDEMPOTENCY-KEY: bench-c-$i-$$" -d '{"asset":"USD","amount":"1000000"}' >/dev/null
  echo "$w" >>"$wallets"
done
KEY=$key WALLETS=$wallets wrk -t2 -c64 -d"${secs}s" -s "$(dirname "$0")/transfers.lua" "$url/"
curl -s "$url/v1/admin/audit" -H "X-API-KEY: $SETTLE_ADMIN_KEY"; echo
