# Sourced by scripts: `serve ROOT PORT` starts scripts/serve.mjs in the background, waits
# until it is listening, and fails loudly if it cannot (a port already in use, say). The
# PIDs are collected in SERVERS and killed at exit.
SERVERS=()
trap 'kill "${SERVERS[@]}" 2>/dev/null || true' EXIT
serve() {
  local root=$1 port=$2 log
  log=$(mktemp)
  node scripts/serve.mjs "$root" "$port" >"$log" 2>&1 &
  local pid=$!
  SERVERS+=("$pid")
  for _ in $(seq 100); do
    if grep -q "^serving" "$log"; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "serve: could not start a server on port $port:" >&2
      grep -m1 -E "Error|EADDRINUSE" "$log" >&2 || cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "serve: server on port $port did not start" >&2
  return 1
}
