#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds clipserve, starts the server with
# the built-in model, and classifies a clip through it with the client.
# The server then keeps serving on :8001 until Ctrl-C (SIGINT drains it).
# DEMO_EXIT=1 stops it right after the demo request instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh

port=${GRPC_PORT:-8001}
log=$(mktemp)
./build/server/clipserve --grpc-port "$port" 2> >(tee "$log" >&2) &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log"' EXIT

for _ in $(seq 1 300); do
  grep -q "serving gRPC on port" "$log" && break
  kill -0 $server 2>/dev/null || { echo "clipserve exited during start-up" >&2; exit 1; }
  sleep 0.2
done
grep -q "serving gRPC on port" "$log" || { echo "clipserve did not start" >&2; exit 1; }

echo "== demo request: a random 16 x 112 x 112 uint8 clip"
./build/client/clipserve-client --server "localhost:$port" --top-k 5

if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo "== clipserve keeps serving on port $port; Ctrl-C stops it (after draining)"
trap - EXIT
wait $server
