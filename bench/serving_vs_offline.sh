#!/usr/bin/env bash
# Served throughput against the in-process ceiling, and batching on vs. off.
#
#   bash bench/serving_vs_offline.sh [OUT_DIR]
#
# 1. writes the benchmark repository (tiny-b8: batches up to 8; tiny-b1:
#    max_batch_size 1), same weights;
# 2. offline ceiling: tiny-b8's instance in-process at batch 1 and 8;
# 3. starts clipserve on loopback and drives it with clipserve-perf:
#    tiny-b8 at concurrency 1, 8, 16 (16 saturates it: batches come out full),
#    tiny-b1 at concurrency 8;
# 4. prints the ratios from this one run (results JSON in OUT_DIR).
# Needs a build (scripts/build.sh). Takes about 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
bin=build
window=${WINDOW_SECONDS:-20}
warmup=${WARMUP_SECONDS:-5}

repo="$out/repository"
rm -rf "$repo"
"$bin/bench/clipserve-bench-repo" "$repo"

echo "== offline ceiling (in-process, no gRPC)"
"$bin/bench/clipserve-offline" --model-repository "$repo" --model tiny-b8 \
  --batch-sizes 1,8 --seconds "$window" | tee "$out/offline.jsonl"

. scripts/lib/start-server.sh
start_clipserve "$bin/server/clipserve" "$out/server.log" --model-repository "$repo"

echo "== served: tiny-b8 (dynamic batching up to 8)"
"$bin/client/clipserve-perf" --server "127.0.0.1:$port" --model tiny-b8 \
  --concurrency 1,8,16 --warmup-seconds "$warmup" --window-seconds "$window" \
  --json "$out/served-b8.json"
echo "== served: tiny-b1 (max_batch_size 1)"
"$bin/client/clipserve-perf" --server "127.0.0.1:$port" --model tiny-b1 \
  --concurrency 8 --warmup-seconds "$warmup" --window-seconds "$window" \
  --json "$out/served-b1.json"

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
offline = {o["batch_size"]: o for o in map(json.loads, open(f"{out}/offline.jsonl"))}
def steps(path):  # clipserve-perf --json: {"steps": [...]} (a bare list before)
    d = json.load(open(path))
    return d["steps"] if isinstance(d, dict) else d
b8 = {s["concurrency"]: s for s in steps(f"{out}/served-b8.json")}
b1 = {s["concurrency"]: s for s in steps(f"{out}/served-b1.json")}
sat = b8[16]
print()
print("| measure | clips/s | ratio |")
print("|---|---|---|")
print(f"| offline ceiling, batch 8 | {offline[8]['clips_per_second']:.2f} | |")
print(f"| served, concurrency 16 (mean batch {sat['mean_batch_size']:.2f}) | "
      f"{sat['throughput']:.2f} | {sat['throughput'] / offline[8]['clips_per_second']:.3f} of offline |")
print(f"| offline, batch 1 | {offline[1]['clips_per_second']:.2f} | |")
print(f"| served, batching on, concurrency 8 (mean batch {b8[8]['mean_batch_size']:.2f}) | "
      f"{b8[8]['throughput']:.2f} | {b8[8]['throughput'] / b1[8]['throughput']:.2f}x batching off |")
print(f"| served, batching off (max_batch_size 1), concurrency 8 | {b1[8]['throughput']:.2f} | |")
print()
print(f"latency at concurrency 8: on p50 {b8[8]['p50_us']/1000:.1f} ms p99 {b8[8]['p99_us']/1000:.1f} ms;"
      f" off p50 {b1[8]['p50_us']/1000:.1f} ms p99 {b1[8]['p99_us']/1000:.1f} ms")
PY
