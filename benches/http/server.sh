# Sourced by the scripts beside it: a fresh settle server for one run.
#
#   start_server BINARY PORT [serve options...]
#
# Starts `BINARY serve` on 127.0.0.1:PORT in a new temporary data directory,
# with SERVE_ENV (e.g. "TOKIO_WORKER_THREADS=1") in its environment, and waits
# until it answers /healthz. Sets D (the data directory; the server's log is
# $D/serve.log), SP (its pid) and U (its URL); on exit the server is stopped
# and D removed. `metric NAME` prints one value from its /metrics.
start_server() {
  local bin=$1 port=$2
  shift 2
  D=$(mktemp -d)
  env ${SERVE_ENV:-} "$bin" serve --data-dir "$D" --listen "127.0.0.1:$port" "$@" > "$D/serve.log" 2>&1 &
  SP=$!
  trap 'kill $SP 2>/dev/null; wait $SP 2>/dev/null; rm -rf "$D"' EXIT
  U="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do curl -sf "$U/healthz" > /dev/null && break; sleep 0.1; done
  # A server left on the port would answer for this one: refuse to measure it.
  if ! kill -0 "$SP" 2>/dev/null; then
    echo "the server did not start (port $port taken?):" >&2
    cat "$D/serve.log" >&2
    exit 1
  fi
}

metric() { curl -s "$U/metrics" | awk -v k="$1" '$1==k{print $2}'; }
