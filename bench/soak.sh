#!/usr/bin/env bash
# Soak: one server under a steady mix of good, bad, cancelled, late and
# streamed requests for SOAK_SECONDS; every request accounted for by status
# code, and the server's memory, file descriptors and threads flat.
#
#   bash bench/soak.sh
#   BUILD_DIR=build-asan SOAK_SECONDS=180 SAMPLE_SECONDS=20 bash bench/soak.sh
#
# 1. writes the benchmark models (clipserve-bench-repo: tiny-b8, micro) and
#    four more from tiny-b8's weights: anysize (free T, H, W), tiny-video,
#    tiny-deadline and tiny-cancel (8x48x48 clips, 200 ms batching
#    windows); makes small test videos with ffmpeg (H.264/MP4, VP9/WebM,
#    MPEG-4/AVI, HEVC/MKV and an H.264 Annex B stream); starts clipserve
#    with --max-request-bytes 8 MiB and --video-max-bytes 4 MiB;
# 2. for SOAK_SECONDS, all at once (open loop, Poisson; rates per second,
#    times SOAK_LOAD_SCALE):
#      clipserve-perf  tiny-b8        uint8 16x112x112 clips            3
#      clipserve-perf  micro          fp32 3x4x16x16 clips              20
#      soak_load.py    anysize        uint8 clips of three shapes       3
#                      tiny-video     the four videos (server decodes)  1.5
#                      tiny-deadline  deadlines of 100-600 ms           3
#                      tiny-cancel    cancelled 50-250 ms after sending 3
#                                     (both uint8 8x48x48 clips)
#                      (several)      13 kinds of malformed request     2
#                      micro          9 MiB, over the request limit     0.1
#                      tiny-b8        a ClassifyStream every 6 s: whole,
#                                     cancelled, unknown model, no open
#      clipserve-perf --streams 2 (320x240 H.264 at 15 fps, real time) on
#                      tiny-b8, runs of 60 s back to back;
#    every SAMPLE_SECONDS the server's VmRSS, open fds and threads (and
#    its request count, open streams and requests in flight) go to
#    samples.csv;
# 3. waits for the generators (they drain up to 60 s), then until nothing
#    is in flight, scrapes the metrics, stops the server (SIGTERM: it must
#    exit 0, with no sanitizer report in its log);
# 4. bench/soak_load.py report: the generators' counts by gRPC code against
#    the server's clipserve_requests_total by model and code (and
#    clipserve_streams_ended_total by code): any mismatch, or a code a
#    source may not end with (anything but OK for well-formed requests,
#    e.g. INTERNAL or UNKNOWN), fails. The differences allowed (shown): a
#    call the client cancelled, or whose deadline passed, after the server
#    had answered it OK; and such calls given up before gRPC handed them to
#    clipserve, never counted there (at most 1% of them). Then the resource
#    table and the verdict: after the warm-up (the first 20% of the run,
#    and at least the first sample) RSS must grow less than 2% (last sample
#    against the first after the warm-up; the max is reported), and fds and
#    threads stay flat: max - min at most FD_SLACK / THREAD_SLACK (default 8
#    each: the load's own connections, reconnections after
#    --grpc-max-connection-age, and a thread per open stream move them by a
#    few).
# Exit status 0 when the soak passed, 1 when it failed (why is printed).
#
# MALLOC_ARENA_MAX is 2 unless set, as in the container images (deploy/
# Dockerfile.*): the server runs as it is deployed. MALLOC_ARENA_MAX= (empty)
# measures glibc's default instead.
#
# Environment (defaults): BUILD_DIR (build: a Release build; clipserve,
# clipserve-perf and clipserve-bench-repo), SOAK_SECONDS (1800),
# SAMPLE_SECONDS (60), SOAK_LOAD_SCALE (1), SOAK_OUT (a new mktemp -d; its
# name is printed first), PYTHON (/usr/bin/python3, with grpcio and
# grpc_tools), FD_SLACK (8), THREAD_SLACK (8). Needs ffmpeg and curl. About
# one core of load on the reference 2-core VM; do not build or run other
# benchmarks meanwhile. Not run in CI.
set -euo pipefail
if [[ -z "${MALLOC_ARENA_MAX+set}" ]]; then export MALLOC_ARENA_MAX=2; fi
[[ -n "$MALLOC_ARENA_MAX" ]] || unset MALLOC_ARENA_MAX
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
seconds=${SOAK_SECONDS:-1800}
every=${SAMPLE_SECONDS:-60}
scale=${SOAK_LOAD_SCALE:-1}
python=${PYTHON:-/usr/bin/python3}
out=${SOAK_OUT:-$(mktemp -d)}
mkdir -p "$out"
echo "soak: output in $out"

log() { echo "soak: $*"; }
fail() { echo "soak: $*" >&2; exit 1; }
[[ $seconds =~ ^[0-9]+$ && $seconds -ge 10 ]] || fail "SOAK_SECONDS must be an integer >= 10"
[[ $every =~ ^[0-9]+$ && $every -ge 1 ]] || fail "SAMPLE_SECONDS must be a positive integer"
for b in server/clipserve client/clipserve-perf bench/clipserve-bench-repo; do
  [ -x "$build/$b" ] || fail "$build/$b is missing (scripts/build.sh, or set BUILD_DIR)"
done
for tool in ffmpeg curl "$python"; do
  command -v "$tool" >/dev/null || fail "$tool is missing"
done
rate() { awk -v r="$1" -v s="$scale" 'BEGIN { printf "%g", r * s }'; }
: >"$out/failures.txt"
note() { echo "$*" >>"$out/failures.txt"; log "$*"; }

# 1. Models, media, server.
repo="$out/repository"
rm -rf "$repo"
"$build/bench/clipserve-bench-repo" "$repo" >/dev/null
rm -rf "$repo/tiny-b1"
derive() {  # NAME QUEUE_DELAY_US [DIMS]: tiny-b8's weights under another name
  local sed_args=(-e "s/\"tiny-b8\"/\"$1\"/"
                  -e "s/max_queue_delay_microseconds: [0-9]*/max_queue_delay_microseconds: $2/")
  [ $# -ge 3 ] && sed_args+=(-e "s/dims: \[3, 16, 112, 112\]/dims: [$3]/")
  mkdir -p "$repo/$1/1"
  cp "$repo/tiny-b8/1/model.pt" "$repo/$1/1/"
  sed "${sed_args[@]}" "$repo/tiny-b8/config.pbtxt" >"$repo/$1/config.pbtxt"
}
derive anysize 2000 "3, -1, -1, -1"
derive tiny-video 2000
derive tiny-deadline 200000 "3, 8, 48, 48"
derive tiny-cancel 200000 "3, 8, 48, 48"

media="$out/media"
mkdir -p "$media"
ff() { ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; }
src() { echo "testsrc2=size=$1:rate=$2:duration=$3"; }
ff -f lavfi -i "$(src 320x240 25 2)" -c:v libx264 -pix_fmt yuv420p "$media/h264.mp4"
ff -f lavfi -i "$(src 256x144 30 2)" -c:v libvpx-vp9 -b:v 300k "$media/vp9.webm"
ff -f lavfi -i "$(src 176x144 15 3)" -c:v mpeg4 -q:v 5 "$media/mpeg4.avi"
ff -f lavfi -i "$(src 320x180 25 2)" -c:v libx265 -x265-params log-level=error \
  -pix_fmt yuv420p "$media/hevc.mkv"
# The pushed stream soak_load.py paces over 4 s: 15 fps, a keyframe a second.
ff -f lavfi -i "$(src 320x240 15 4)" -c:v libx264 -pix_fmt yuv420p -g 15 -bf 0 \
  -bsf:v h264_mp4toannexb -f h264 "$media/stream.h264"

. scripts/lib/start-server.sh
start_clipserve "$build/server/clipserve" "$out/server.log" --model-repository "$repo" \
  --max-request-bytes $((8 << 20)) --video-max-bytes $((4 << 20))
mport=$(sed -n 's/.*serving metrics on port \([0-9]*\).*/\1/p' "$out/server.log" | head -1)
[ -n "$mport" ] || fail "no metrics port in $out/server.log"
log "clipserve pid $server on 127.0.0.1:$port, metrics on $mport; ${seconds} s of load, a sample every ${every} s"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  if [ -n "${server:-}" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
}
trap cleanup EXIT

scrape() { curl -sf --max-time 10 "http://127.0.0.1:$mport/metrics"; }
metric_sum() {  # NAME < metrics: the sum of its series
  awk -v n="$1" 'index($0, n "{") == 1 || $1 == n { s += $2 } END { printf "%d", s }'
}
scrape >"$out/metrics-start.prom" || fail "cannot read the metrics on port $mport"

# 2. The load.
perf=("$build/client/clipserve-perf" --server "127.0.0.1:$port")
t0=$(date +%s)
end=$((t0 + seconds))
for spec in "tiny-b8 3 uint8" "micro 20 fp32"; do
  read -r model r dtype <<<"$spec"
  "${perf[@]}" --model "$model" --dtype "$dtype" --request-rate "$(rate "$r")" \
    --max-outstanding 64 --warmup-seconds 0 --window-seconds "$seconds" --drain-seconds 60 \
    --json "$out/perf-$model.json" >"$out/perf-$model.txt" 2>&1 &
  pids+=($!)
done
"$python" bench/soak_load.py load --server "127.0.0.1:$port" --seconds "$seconds" \
  --media "$media" --scale "$scale" --json "$out/load.json" >"$out/load.txt" 2>&1 &
pids+=($!)
stream_runs() {  # back-to-back clipserve-perf --streams runs until $end
  local n=0 left child=
  trap 'kill -TERM $child 2>/dev/null; exit 143' TERM
  while left=$((end - $(date +%s))); [ "$left" -ge 10 ]; do
    n=$((n + 1))
    local name
    name=$(printf 'perf-streams-%03d' "$n")
    "${perf[@]}" --model tiny-b8 --streams 2 --stream-size 320x240 --stream-fps 15 \
      --stream-seconds $((left < 60 ? left : 60)) --drain-seconds 30 \
      --json "$out/$name.json" >"$out/$name.txt" 2>&1 &
    child=$!
    wait "$child" || true
    [ -s "$out/$name.json" ] || echo "clipserve-perf --streams run $n left no report ($name.txt)" \
      >>"$out/failures.txt"
  done
}
stream_runs &
pids+=($!)

echo "t_s,rss_kb,fds,threads,requests,streams_active,inflight" >"$out/samples.csv"
sample() {  # T: one row of samples.csv (/proc first: the scrape adds a connection)
  local st=/proc/$server/status rss threads fds m
  rss=$(awk '/^VmRSS:/ { print $2 }' "$st")
  threads=$(awk '/^Threads:/ { print $2 }' "$st")
  fds=$(find "/proc/$server/fd" -mindepth 1 -maxdepth 1 | wc -l)
  m=$(scrape || true)
  echo "$1,$rss,$fds,$threads,$(metric_sum clipserve_requests_total <<<"$m"),$(
    metric_sum clipserve_streams_active <<<"$m"),$(metric_sum clipserve_inflight_requests <<<"$m")"
}
t=0
while :; do
  wait_s=$((t0 + t - $(date +%s)))
  [ "$wait_s" -gt 0 ] && sleep "$wait_s"
  if ! kill -0 "$server" 2>/dev/null; then
    tail -20 "$out/server.log" >&2
    fail "the server exited during the soak, at about ${t} s (log above: $out/server.log)"
  fi
  row=$(sample "$t")
  echo "$row" >>"$out/samples.csv"
  IFS=, read -r _ rss fds threads requests streams inflight <<<"$row"
  log "t=${t}s RSS $((rss / 1024)) MiB, fds $fds, threads $threads; $requests requests, $streams streams open, $inflight in flight"
  [ "$t" -ge "$seconds" ] && break
  t=$((t + every < seconds ? t + every : seconds))
done

# 3. The generators' ends, then the server's.
deadline=$((end + 150))  # their drains are 60 s and 30 s
for p in "${pids[@]}"; do
  while kill -0 "$p" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 1; done
  if kill -0 "$p" 2>/dev/null; then
    note "a load generator (pid $p) was still running 150 s after the load ended; stopped"
    kill -TERM "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
done
pids=()
for f in perf-tiny-b8 perf-micro load; do
  [ -s "$out/$f.json" ] || note "no $f.json: the generator failed ($out/$f.txt)"
done
# Cancelled calls and streams are counted when the server gets to them.
settled=
for _ in $(seq 30); do
  m1=$(scrape || true)
  sleep 1
  m2=$(scrape || true)
  if [ "$(metric_sum clipserve_inflight_requests <<<"$m2")" = 0 ] &&
     [ "$(metric_sum clipserve_streams_active <<<"$m2")" = 0 ] &&
     [ "$(metric_sum clipserve_requests_total <<<"$m1")" = "$(metric_sum clipserve_requests_total <<<"$m2")" ] &&
     [ "$(metric_sum clipserve_streams_ended_total <<<"$m1")" = "$(metric_sum clipserve_streams_ended_total <<<"$m2")" ]; then
    settled=1
    break
  fi
done
[ -n "$settled" ] || log "the server's counts were still moving 60 s after the load (compared as they are)"
scrape >"$out/metrics-end.prom" || fail "cannot read the metrics at the end"
kill -TERM "$server"
rc=0
wait "$server" || rc=$?
server=
[ "$rc" = 0 ] || note "the server exited $rc after SIGTERM (want 0; $out/server.log)"
if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|runtime error:" "$out/server.log"; then
  note "a sanitizer report in $out/server.log"
fi

# 4. The accounting and the verdict.
status=0
"$python" bench/soak_load.py report "$out" --seconds "$seconds" \
  --fd-slack "${FD_SLACK:-8}" --thread-slack "${THREAD_SLACK:-8}" | tee "$out/report.txt" ||
  status=1
echo "soak: output in $out"
exit "$status"
