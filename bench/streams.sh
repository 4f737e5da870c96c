#!/usr/bin/env bash
# Live streams on this machine's CPU: how many 1080p25 H.264 cameras one
# server holds, and a single camera's frame-to-answer latency against the
# model's compute time.
#
#   bash bench/streams.sh [OUT_DIR]
#
# 1. writes the stream benchmark's model (clipserve-bench-repo DIR streams:
#    TinyVideoNet on 8 x 112 x 112 windows, stride 8, batches up to 8) and
#    starts clipserve on loopback;
# 2. one camera for STREAM_SECONDS (default 20): p50/p99 latency, the mean
#    compute time per window, and their difference;
# 3. clipserve-perf --find-max-streams: 1, 2, 4, ... cameras (then a
#    bisection), each run STREAM_SECONDS, passing while every window is
#    answered with p99 <= 200 ms.
# Every camera pushes the same pre-encoded H.264 (a synthetic moving
# pattern, 2 s looped), one access unit a message, in real time. Results
# (text and JSON) in OUT_DIR. Needs a build (scripts/build.sh); takes about
# 4 minutes. Do not build or run other benchmarks meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
seconds=${STREAM_SECONDS:-20}
repo="$out/repository"
rm -rf "$repo"
build/bench/clipserve-bench-repo "$repo" streams

. scripts/lib/start-server.sh
start_clipserve build/server/clipserve "$out/server.log" --model-repository "$repo"
perf=(build/client/clipserve-perf --server "127.0.0.1:$port" --model tiny8-b8
      --stream-size 1920x1080 --stream-fps 25 --stream-seconds "$seconds")

echo "== one camera"
"${perf[@]}" --streams 1 --json "$out/one.json" | tee "$out/one.txt"
echo "== the most cameras within 200 ms p99, no drops"
"${perf[@]}" --find-max-streams --streams 32 --json "$out/max.json" | tee "$out/max.txt"

python3 - "$out/one.json" "$out/max.json" <<'PY'
import json, sys
one = json.load(open(sys.argv[1]))["runs"][-1]["overall"]
best = json.load(open(sys.argv[2]))["max_streams"]
p50, compute = one["p50_us"] / 1000, one["mean_compute_us"] / 1000
print(f"one camera: p50 {p50:.1f} ms, p99 {one['p99_us'] / 1000:.1f} ms, compute "
      f"{compute:.1f} ms a window: p50 - compute = {p50 - compute:.1f} ms (target <= 30)")
print(f"most cameras held (p99 <= 200 ms, no drops): {best}")
PY
