#!/usr/bin/env bash
# DecodeClip (FFmpeg's libraries) against the OpenCV decoder it replaced and
# against PyAV (bench/pyav_decode.py: decode-and-pick, and decord/TorchCodec-
# style seeking), and with Sampling::approximate, on the videos of issue
# 13's targets, pinned to one core, min
# of 3 runs each:
#
#   bash bench/decode_compare.sh [OUT_DIR]
#
# The videos are made with the ffmpeg CLI from its testsrc2 source (moving,
# textured) and kept in OUT_DIR/videos for later runs. Needs a build
# (scripts/build.sh) and the project's venv (PyAV). Prints a markdown table;
# JSON lines in OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out/videos"
bin=${BUILD_DIR:-build}/bench/clipserve-decode-compare
python=${VENV:-.venv}/bin/python

make_video() {  # name seconds size args...
  local name=$1 seconds=$2 size=$3; shift 3
  local f="$out/videos/$name.mp4"
  [ -s "$f" ] || ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i "testsrc2=size=$size:rate=30" -t "$seconds" \
    -c:v libx264 -pix_fmt yuv420p "$@" "$f"
  echo "$f"
}
videos=(
  "10 s 1080p30, x264 defaults (keyint 250, B-frames)|$(make_video k250 10 1920x1080)"
  "10 s 1080p30, keyint 60|$(make_video k60 10 1920x1080 -g 60)"
  "5 min 1080p30, keyint 60 (preset veryfast)|$(make_video long 300 1920x1080 -g 60 -preset veryfast)"
  "4 s 360p30, x264 defaults|$(make_video short 4 640x360)"
)
: > "$out/decode_compare.jsonl"
echo "| video | DecodeClip (ms) | OpenCV baseline (ms) | speedup | PyAV pick (ms) | PyAV seek (ms) | DecodeClip vs best PyAV | packets decoded / frames | restarts | pixels vs PyAV (worst frame, mean abs) | approximate (ms) | approximate packets decoded | approximate vs baseline |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for entry in "${videos[@]}"; do
  label=${entry%%|*}; file=${entry#*|}
  line=$(taskset -c 0 "$bin" --video "$file" --frames 16 --runs 3 --dump "$out/clip.rgb")
  approx=$(taskset -c 0 "$bin" --video "$file" --frames 16 --runs 3 --baseline false --approximate)
  indices=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["frame_indices"])' "$line")
  pyav=$(taskset -c 0 "$python" bench/pyav_decode.py --video "$file" \
         --indices "$indices" --runs 3 --ours "$out/clip.rgb")
  echo "{\"label\": \"$label\", \"clipserve\": $line, \"pyav\": $pyav, \"approximate\": $approx}" >> "$out/decode_compare.jsonl"
  python3 - "$label" "$line" "$pyav" "$approx" <<'PY'
import json, sys
label, d, p, a = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
best = min(p["pick_ms"], p["seek_ms"])
print(f"| {label} | {d['ms']:.0f} | {d['baseline_ms']:.0f} | {d['speedup']:.2f}x | "
      f"{p['pick_ms']:.0f} | {p['seek_ms']:.0f} | {best / d['ms']:.2f}x | "
      f"{d['packets_decoded']} / {d['source_frames']} | {d['restarts']} | "
      f"{p['ours_vs_pyav_worst_frame_mean_abs']:.2f} | {a['ms']:.0f} | "
      f"{a['packets_decoded']} | {d['baseline_ms'] / a['ms']:.2f}x |")
PY
done
