#!/bin/bash
# Instructions and cache misses per routed transfer, counted by a cache
# simulator (valgrind's cachegrind) instead of timed: on this shared VM the
# same binary's CPU per transfer moves by ±20% from one minute to the next
# (other tenants share the L3), while these counts move by ~4%.
#
#   benches/sim/transfers.sh BINARY [TRANSFERS]
#   benches/sim/transfers.sh target/release/deps/throughput-HASH 100000
#
# BINARY is the `throughput` bench (`cargo bench --bench throughput
# --no-run` prints it). Runs its `transfers` mode twice under cachegrind,
# with 64 transfers and with TRANSFERS (default 100,000), both without the
# end check (SETTLE_END_CHECK=0), and prints the difference per transfer:
# the set-up of 10,000 wallets cancels out. Caches simulated: 32 KiB L1s and
# an 8 MiB last level (a share of the host's 32 MiB L3). Takes ~20 s per
# 100,000 transfers; needs valgrind (Debian: apt install valgrind). Leaves
# the counts in $OUT (default a temporary directory) for `cg_annotate`.
set -euo pipefail
BIN=$1; N=${2:-100000}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
run() {
  SETTLE_END_CHECK=0 SETTLE_ROUNDS=1 SETTLE_TRANSFERS=$1 SETTLE_BENCH=transfers \
    valgrind --tool=cachegrind --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 \
    --LL=8388608,16,64 --cachegrind-out-file="$OUT/cg.$1" "$BIN" > "$OUT/log.$1" 2>&1
}
run 64 & run "$N"; wait
python3 - "$OUT/log.64" "$OUT/log.$N" "$N" <<'PY'
import re, sys
def counts(path):
    found = {}
    for line in open(path):
        m = re.search(r'(I|D|D1|LLd)\s+(refs|misses):\s+([\d,]+)', line)
        if m:
            found[m.group(1) + ' ' + m.group(2)] = int(m.group(3).replace(',', ''))
    return found
short, long, n = counts(sys.argv[1]), counts(sys.argv[2]), int(sys.argv[3]) - 64
names = {'I refs': 'instructions', 'D refs': 'data_refs', 'D1 misses': 'l1d_misses', 'LLd misses': 'll_misses'}
print(' '.join('%s/transfer=%.1f' % (names[k], (long[k] - short[k]) / n) for k in names))
PY
echo "counts in $OUT (cg_annotate $OUT/cg.$N)"
