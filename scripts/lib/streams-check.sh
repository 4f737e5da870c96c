#!/usr/bin/env bash
# The cameras users quoted: 8 live 1080p25 H.264 streams (clipserve-perf
# --streams, pushed in real time, one access unit a message) classified by
# the built-in I3D (16 x 224 x 224 windows, stride 16) on the GPU, against
# the issue's bar: p99 frame-to-answer latency <= 200 ms and no window
# dropped. Writes OUT_DIR/streams.json and prints one summary line; exits 1
# when the bar is missed.
#
#   bash scripts/lib/streams-check.sh BUILD_DIR OUT_DIR
#
# Needs a CLIPSERVE_VIDEO=ON build (the server decodes H.264; the load
# generator encodes its test stream). Run by scripts/gpu-check.sh.
set -euo pipefail
build=$1 out=$2
streams=${STREAMS_CHECK_STREAMS:-8}
seconds=${STREAMS_CHECK_SECONDS:-30}
server=$build/server/clipserve
perf=$build/client/clipserve-perf
for b in "$server" "$perf"; do
  [ -x "$b" ] || { echo "streams: $b is missing"; exit 1; }
done
server_bin=$server
. "$(dirname "$0")/start-server.sh"
start_clipserve "$server_bin" "$out/streams-server.log" 2>>"$out/streams.log" ||
  { echo "streams: the server did not start ($out/streams-server.log)"; exit 1; }
"$perf" --server "127.0.0.1:$port" --model i3d --streams "$streams" \
  --stream-size 1920x1080 --stream-fps 25 --stream-seconds "$seconds" \
  --json "$out/streams.json" >"$out/streams.txt" 2>&1 ||
  { echo "streams: clipserve-perf failed: $(tail -3 "$out/streams.txt")"; exit 1; }
python3 - "$out/streams.json" "$streams" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][-1]["overall"]
n = int(sys.argv[2])
p99, dropped = run["p99_us"] / 1000, run["dropped"]
ok = p99 <= 200 and dropped == 0 and run["windows"] > 0
print(f"streams: {n} x 1080p25 H.264, I3D 16x224x224 stride 16: p50 {run['p50_us'] / 1000:.0f} ms, "
      f"p99 {p99:.0f} ms, max {run['max_us'] / 1000:.0f} ms, {run['windows']} windows, "
      f"{dropped} dropped, mean batch {run['mean_batch']:.2f}, "
      f"decode share {run['decode_share']:.2f}: {'PASS' if ok else 'FAIL (bar: p99 <= 200 ms, no drops)'}")
sys.exit(0 if ok else 1)
PY
