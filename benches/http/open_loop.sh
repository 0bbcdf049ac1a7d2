#!/bin/bash
# One open-loop run against a fresh durable server, with where its tail
# came from: the client's p50/p99/max and p99/max per second, the share of
# requests the server itself took longer than 1/2.5/5/10/25 ms over
# (settle_http_request_duration_seconds), the server's CPU per request, and
# this machine's CPU steal during the run (settle load's hostCpu), and the
# log's fsyncs (settle_wal_fsync_seconds: how many, and how many took over
# 2.5/5/10/25 ms) and the segments it started, from a spare or new.
#
#   benches/http/open_loop.sh BINARY PORT RATE
#
# FSYNC (always), SERVE_ENV (e.g. "TOKIO_WORKER_THREADS=1"), SERVE_OPTS (more
# `serve` options, e.g. "--segment-mib 1024") and DUR (10s)
# from the environment. 10,000 wallets are set up first; the run itself
# spreads over 100 of them, 64 connections, 2 s warm-up.
set -euo pipefail
BIN=$1; PORT=$2; RATE=$3
. "$(dirname "$0")/server.sh"
start_server "$BIN" "$PORT" --fsync "${FSYNC:-always}" ${SERVE_OPTS:-}
"$BIN" load --url "$U" --data-dir "$D" --duration 1s --wallets 10000 --json > /dev/null 2>&1
hist() { curl -s "$U/metrics" | grep settle_http_request_duration_seconds_bucket | grep transfers \
  | sed 's/.*le="\([^"]*\)".* \([0-9]*\)$/\1 \2/'; }
hist > "$D/h0"; c0=$(awk '{print $14+$15}' "/proc/$SP/stat")
"$BIN" load --url "$U" --data-dir "$D" --connections 64 --duration "${DUR:-10s}" --warmup 2s \
  --rate "$RATE" --wallets 100 --json > "$D/load.json" 2>/dev/null
hist > "$D/h1"; c1=$(awk '{print $14+$15}' "/proc/$SP/stat")
python3 - "$D/load.json" "$D/h0" "$D/h1" "$c0" "$c1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); l = j["latencyMicros"]; h = j.get("hostCpu") or {}
read = lambda p: [(float(a), int(b)) for a, b in (line.split() for line in open(p))]
h0, h1 = read(sys.argv[2]), read(sys.argv[3])
counts = [(le, b1 - b0) for (le, b0), (_, b1) in zip(h0, h1)]
n = counts[-1][1]
over = " ".join(">%gms %.2f%%" % (le * 1e3, (n - c) * 100.0 / n) for le, c in counts if 0.001 <= le <= 0.025)
c0, c1, hz = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
# CPU over warm-up and run, shared over the run's requests plus the warm-up's (at the same rate).
reqs = j["requests"] + j["targetRate"] * j["warmupSecs"]
print("steal %.1f%% busy %.1f%% | client p50 %.1f p99 %.1f max %.1f ms | server took %s | server CPU %.0f us/request" % (
    h.get("stealPercent", -1), h.get("busyPercent", -1), l["p50"] / 1e3, l["p99"] / 1e3, l["max"] / 1e3,
    over, (c1 - c0) / hz * 1e6 / reqs))
print("  p99/max per second (ms): " + " ".join("%.0f/%.0f" % (t["p99Micros"] / 1e3, t["maxMicros"] / 1e3) for t in j["timeline"]))
PY
curl -s "$U/metrics" | python3 -c '
import re, sys
m = sys.stdin.read()
b = {le: int(float(v)) for le, v in re.findall(r"settle_wal_fsync_seconds_bucket\{le=\"([^\"]+)\"\} (\S+)", m)}
n = b.get("+Inf", 0)
seg = " ".join("%s %s" % kv for kv in re.findall(r"settle_wal_segments_total\{from=\"(\w+)\"\} (\S+)", m))
print("  fsyncs %d, over 2.5/5/10/25 ms: %s | segments started: %s" % (n, "/".join(str(n - b.get(le, n)) for le in ("0.0025", "0.005", "0.01", "0.025")), seg or "none"))
'
