#!/usr/bin/env bash
# NVDEC against the CPU decoder: DecodeClip with DecodeOptions::device cuda
# and cpu on one 10 s 1080p30 H.264 video (libx264 defaults), 16 frames
# uniform, min of 3 runs each, and how far the two clips' pixels are apart.
# Writes OUT_DIR/nvdec.json and prints one summary line; exits 1 when the
# cuda run fell back to the CPU (the reason is printed).
#
#   bash scripts/lib/nvdec-check.sh BUILD_DIR OUT_DIR
#
# The video is made with the ffmpeg CLI unless NVDEC_VIDEO names one.
# Run by scripts/gpu-check.sh; here (no GPU) it shows the fallback.
set -euo pipefail
build=$1 out=$2
bin=$build/bench/clipserve-decode-compare
[ -x "$bin" ] || { echo "NVDEC: $bin is missing (a CLIPSERVE_VIDEO=ON build)"; exit 1; }
video=${NVDEC_VIDEO:-$out/nvdec-1080p.mp4}
if [ ! -s "$video" ]; then
  command -v ffmpeg >/dev/null || { echo "NVDEC: no ffmpeg CLI to make the video (set NVDEC_VIDEO)"; exit 1; }
  ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi \
    -i testsrc2=size=1920x1080:rate=30 -t 10 -c:v libx264 -pix_fmt yuv420p "$video"
fi
cpu=$("$bin" --video "$video" --device cpu --runs 3 --baseline false --dump "$out/nvdec-cpu.rgb")
cuda=$("$bin" --video "$video" --device cuda --runs 3 --baseline false --dump "$out/nvdec-cuda.rgb")
python3 - "$cpu" "$cuda" "$out" <<'PY'
import json, sys
cpu, cuda, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
a = open(f"{out}/nvdec-cpu.rgb", "rb").read()
b = open(f"{out}/nvdec-cuda.rgb", "rb").read()
diff = sum(abs(x - y) for x, y in zip(a, b)) / max(1, len(a)) if len(a) == len(b) else None
result = {"cpu": cpu, "cuda": cuda, "pixels_mean_abs_diff": diff}
json.dump(result, open(f"{out}/nvdec.json", "w"), indent=1)
if not cuda["gpu_decoded"]:
    print(f"NVDEC: FAIL: --decode-device cuda fell back to the CPU: {cuda['fallback']}")
    sys.exit(1)
print(f"NVDEC: 10 s 1080p30 H.264, 16 frames: cuda {cuda['ms']:.0f} ms, "
      f"cpu (1 thread) {cpu['ms']:.0f} ms, {cpu['ms'] / cuda['ms']:.2f}x; "
      f"pixels vs cpu: mean abs diff {diff:.3f}")
PY
