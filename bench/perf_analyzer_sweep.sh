#!/usr/bin/env bash
# Triton's perf_analyzer against clipserve's Open Inference Protocol endpoint:
# a concurrency sweep on one model, one CSV per step, for docs/benchmarks.md.
#
#   bash bench/perf_analyzer_sweep.sh OUT_DIR
#
# 1. installs perf_analyzer when missing (scripts/fetch-perf-analyzer.sh);
# 2. writes the benchmark repository (clipserve-bench-repo) and starts
#    clipserve on loopback (ports 0, read from its log);
# 3. runs perf_analyzer -i grpc once per concurrency, each with its own
#    warm-up requests and stability rule (perf_analyzer's defaults: three
#    windows within 10 %, at most 10 tries), CSV with -f;
# 4. writes OUT_DIR/perf-analyzer.csv (every step, one header, perf_analyzer's
#    columns: throughput, client/server latency split from clipserve's
#    ModelStatistics, p50..p99), and prints it as a Markdown table.
#
# OUT_DIR also gets each step's CSV (c<N>.csv) and output (c<N>.log), the
# server's log, and the model's statistics after the sweep (statistics.json).
#
# Environment (defaults):
#   MODEL=tiny-b8            TinyVideoNet, 16 x 112 x 112, batches up to 8
#   CONCURRENCY="1 2 4 8"
#   MEASUREMENT_MS=10000     perf_analyzer's --measurement-interval
#   WARMUP_REQUESTS=20       --warmup-request-count, per step
#   EXTRA_ARGS=""            more perf_analyzer flags (e.g. "--async")
#   BUILD_DIR=build          where clipserve and clipserve-bench-repo are
#   PERF_ANALYZER=.tools/bin/perf_analyzer
#   PYTHON=.venv/bin/python  with tritonclient, for statistics.json
# Needs a build (scripts/build.sh). About 2 minutes with the defaults on 2
# cores; a step that cannot get a stable measurement fails the sweep (raise
# MEASUREMENT_MS).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/perf_analyzer_sweep.sh OUT_DIR}
model=${MODEL:-tiny-b8}
concurrency=${CONCURRENCY:-1 2 4 8}
window=${MEASUREMENT_MS:-10000}
warmup=${WARMUP_REQUESTS:-20}
build=${BUILD_DIR:-build}
pa=${PERF_ANALYZER:-.tools/bin/perf_analyzer}
python=${PYTHON:-.venv/bin/python}
read -r -a extra <<<"${EXTRA_ARGS:-}"

log() { echo "perf_analyzer_sweep: $*" >&2; }

mkdir -p "$out"
if [ ! -x "$pa" ]; then
  [ "$pa" = .tools/bin/perf_analyzer ] || { log "$pa is missing"; exit 1; }
  bash scripts/fetch-perf-analyzer.sh
fi

repo="$out/repository"
rm -rf "$repo"
"$build/bench/clipserve-bench-repo" "$repo"
. scripts/lib/start-server.sh
start_clipserve "$build/server/clipserve" "$out/server.log" --model-repository "$repo" ||
  { log "the server did not start"; exit 1; }
log "clipserve on 127.0.0.1:$port; $model at concurrency $concurrency, ${window} ms windows"

all="$out/perf-analyzer.csv"
rm -f "$all"
for c in $concurrency; do
  log "concurrency $c"
  "$pa" -m "$model" -i grpc -u "127.0.0.1:$port" --concurrency-range "$c:$c" \
    --measurement-interval "$window" --warmup-request-count "$warmup" \
    -f "$out/c$c.csv" "${extra[@]}" >"$out/c$c.log" 2>&1 || {
    cat "$out/c$c.log" >&2
    log "perf_analyzer failed at concurrency $c (log: $out/c$c.log)"
    exit 1
  }
  if [ ! -f "$all" ]; then
    cat "$out/c$c.csv" >"$all"
  else
    tail -n +2 "$out/c$c.csv" >>"$all"
  fi
done

"$python" - "127.0.0.1:$port" "$model" "$out/statistics.json" <<'PY'
import json, sys
import tritonclient.grpc as grpcclient
url, model, path = sys.argv[1:]
client = grpcclient.InferenceServerClient(url)
with open(path, "w") as f:
    json.dump(client.get_inference_statistics(model, as_json=True), f, indent=2)
client.close()
PY

python3 - "$all" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = [("Concurrency", "concurrency"), ("Inferences/Second", "clips/s"),
        ("Server Queue", "server queue (us)"), ("Server Compute Infer", "compute (us)"),
        ("p50 latency", "p50 (us)"), ("p99 latency", "p99 (us)")]
print("| " + " | ".join(h for _, h in cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    print("| " + " | ".join(r[k] for k, _ in cols) + " |")
PY
log "results in $out (perf-analyzer.csv, c<N>.csv, c<N>.log, statistics.json)"
