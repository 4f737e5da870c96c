#!/usr/bin/env bash
# Model version swaps under load: what ten hot swaps cost the requests in
# flight, against the same load without swaps, on one server in one run.
#
#   bash bench/swaps.sh [OUT_DIR]
#
# 1. writes the benchmark models (clipserve-bench-repo) and starts clipserve
#    in explicit model control mode with 'micro' loaded and an admin token;
# 2. clipserve-perf at concurrency 8 for SWAP_SECONDS (default 20) without
#    swaps;
# 3. the same again while a new version of 'micro' is published ten times
#    (copied to micro/.N, renamed to micro/N) and loaded with
#    `clipserve-client repository load`, one a second; each load's time is
#    printed;
# 4. sent, OK, errors, unfinished, throughput and p50/p99/max of both runs,
#    and their ratios.
# Needs a build (scripts/build.sh); about a minute. Do not build or run other
# benchmarks meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
seconds=${SWAP_SECONDS:-20}
repo="$out/repository"
rm -rf "$repo"
build/bench/clipserve-bench-repo "$repo" >/dev/null
head -c 32 /dev/urandom | base64 >"$out/token"

. scripts/lib/start-server.sh
start_clipserve build/server/clipserve "$out/server.log" --model-repository "$repo" \
  --model-control-mode explicit --load-model micro --admin-token-file "$out/token"
client=(build/client/clipserve-client --server "127.0.0.1:$port"
        --admin-token-file "$out/token")
perf() {
  build/client/clipserve-perf --server "127.0.0.1:$port" --model micro --concurrency 8 \
    --warmup-seconds 1 --window-seconds "$seconds" --drain-seconds 30 --json "$1" >"$1.txt"
}

echo "== without swaps"
perf "$out/steady.json"
echo "== ten swaps"
perf "$out/swaps.json" &
load=$!
sleep 2
for v in $(seq 2 11); do
  cp -r "$repo/micro/$((v - 1))" "$repo/micro/.$v"
  mv "$repo/micro/.$v" "$repo/micro/$v"
  start=$(date +%s%N)
  "${client[@]}" repository load micro >/dev/null
  echo "version $v live in $(( ($(date +%s%N) - start) / 1000000 )) ms"
  sleep 1
done
wait "$load"
"${client[@]}" repository index

python3 - "$out/steady.json" "$out/swaps.json" <<'PY'
import json, sys
runs = [json.load(open(p))["steps"][0] for p in sys.argv[1:]]
for name, s in zip(("steady", "swaps"), runs):
    print(f"{name:7s} sent {s['sent']} ok {s['ok']} errors {s['error_count']} "
          f"unfinished {s['unfinished']} {s['requests_per_second']:.0f} req/s "
          f"p50 {s['p50_us'] / 1000:.2f} ms p99 {s['p99_us'] / 1000:.2f} ms "
          f"max {s['max_us'] / 1000:.1f} ms")
a, b = runs
print(f"swaps / steady: throughput {b['requests_per_second'] / a['requests_per_second']:.2f}, "
      f"p50 {b['p50_us'] / a['p50_us']:.2f}, p99 {b['p99_us'] / a['p99_us']:.2f}")
PY
