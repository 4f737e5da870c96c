#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds clipserve, starts the server with
# the built-in model (Inception-I3D with untrained weights), and classifies a
# generated video through it with the client.
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

echo "== the model"
./build/client/clipserve-client --server "localhost:$port" metadata

# A 4-second 640 x 360 H.264 video, made here: nothing is downloaded.
video=$(mktemp --suffix=.mp4)
ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=25 -t 4 \
  -c:v libx264 -pix_fmt yuv420p "$video"
echo "== demo request: classify a generated H.264 video ($(stat -c %s "$video") bytes)"
./build/client/clipserve-client --server "localhost:$port" --top-k 5 "$video"
rm -f "$video"

if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo "== clipserve keeps serving on port $port; Ctrl-C stops it (after draining)"
trap - EXIT
wait $server
