#!/usr/bin/env bash
# Seed inputs for every fuzz target (scripts/fuzz.sh --list), in
# OUT_DIR/TARGET/. The video ones are made here with the ffmpeg CLI: small
# videos in the containers and stream formats the entry points take, each
# behind the byte that picks the target's mode. make_seeds.py makes the
# others (configs, checkpoints, .npy, requests); it runs with $PYTHON
# (default: the project's venv, which has torch and numpy).
#   bash tests/fuzz/make_seeds.sh OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
python=${PYTHON:-$here/../../.venv/bin/python}
"$python" "$here/make_seeds.py" "$out" "$here/../../proto"
mkdir -p "$out/decode_clip" "$out/stream_decoder"
src=(-f lavfi -i testsrc2=size=96x64:rate=10 -t 2)
enc() { ffmpeg -nostdin -loglevel error -y "${src[@]}" "$@"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
enc -c:v libx264 -preset ultrafast -g 8 -pix_fmt yuv420p "$tmp/a.mp4"
enc -c:v mpeg4 "$tmp/b.avi"
enc -c:v libvpx-vp9 -deadline realtime "$tmp/c.webm"
enc -c:v libx264 -preset ultrafast -g 8 -pix_fmt yuv420p -f mpegts "$tmp/d.ts"
enc -c:v libx264 -preset ultrafast -g 8 -pix_fmt yuv420p -f h264 "$tmp/e.h264"
enc -c:v libx265 -preset ultrafast -x265-params log-level=none -g 8 -f hevc "$tmp/f.hevc"
enc -c:v libx264 -preset ultrafast -g 8 -pix_fmt yuv420p \
  -movflags frag_keyframe+empty_moov+default_base_moof -f mp4 "$tmp/g.mp4"
# decode_clip: mode byte 0x03 (4 frames, uniform).
for f in a.mp4 b.avi c.webm d.ts e.h264; do
  { printf '\003'; cat "$tmp/$f"; } > "$out/decode_clip/$f"
done
# stream_decoder: low bits pick the format, high bits the piece size.
{ printf '\100'; cat "$tmp/e.h264"; } > "$out/stream_decoder/e.h264"  # h264, 16 B
{ printf '\201'; cat "$tmp/f.hevc"; } > "$out/stream_decoder/f.hevc"  # hevc, 256 B
{ printf '\242'; cat "$tmp/d.ts"; } > "$out/stream_decoder/d.ts"      # mpegts, 1 KiB
{ printf '\303'; cat "$tmp/g.mp4"; } > "$out/stream_decoder/g.mp4"    # fmp4, 4 KiB
