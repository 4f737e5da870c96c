#!/usr/bin/env bash
# The one-command GPU check: builds clipserve against the host's PyTorch
# (2.11, CUDA 13), runs the CUDA tests and the GPU benchmarks, and writes
# logs, results.json and summary.md to OUT_DIR. Under 8 minutes on an H100.
#
#   bash scripts/gpu-check.sh OUT_DIR
#
# The GPU host has PyTorch, CUDA, CMake and ninja but no package registry:
# bring the Debian packages the server links in .deps/ (on the build machine:
# EXTRA_DEBS="libgtest-dev libgmock-dev civetweb" bash ../shared/gpu/fetch-deps.sh),
# see docs/gpu.md. Server-side video decoding (and with it the NVDEC check,
# scripts/lib/nvdec-check.sh) is built only where pkg-config finds FFmpeg's
# libraries (the host's own, or carried in .deps/); otherwise the build is
# CLIPSERVE_VIDEO=OFF and the summary says NVDEC was not checked. With video,
# it also runs 8 live 1080p25 camera streams through I3D on the GPU
# (scripts/lib/streams-check.sh: p99 <= 200 ms, no window dropped).
#
# Environment:
#   DEPS_PREFIX   where .deps/*.deb are unpacked (default /opt/deps)
#   BUILD_DIR     (default build-gpu)
#   CUDA_ARCHS    TORCH_CUDA_ARCH_LIST (default: the GPU's own, from nvidia-smi)
#   QUICK=1       short benchmark windows (a smoke run, not figures)
#   GPU_CHECK_VIDEO=ON|OFF
#                 CLIPSERVE_VIDEO regardless of what pkg-config finds
#   GPU_CHECK_DRY_RUN=1
#                 for a machine without a GPU: skip the GPU checks, build,
#                 and stop before anything needs the GPU
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: bash scripts/gpu-check.sh OUT_DIR" >&2; exit 64; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
exec > >(tee "$out/gpu-check.log") 2>&1
start=$(date +%s)
step() { echo "== [$(( $(date +%s) - start )) s] $*"; }
fail() { echo "FAIL: $*"; exit 1; }
dry=${GPU_CHECK_DRY_RUN:-0}
build=${BUILD_DIR:-build-gpu}
deps=${DEPS_PREFIX:-/opt/deps}

step "preflight"
python=$(command -v python3) || fail "python3 is not on PATH"
for tool in cmake ninja; do
  command -v "$tool" >/dev/null || fail "$tool is not on PATH"
done
torch_dir=$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))') ||
  fail "python3 cannot import torch"
torch_version=$("$python" -c 'import torch; print(torch.__version__)')
case "$torch_version" in 2.11.*) ;; *) fail "torch $torch_version; the check is pinned to 2.11" ;; esac
if [ "$dry" != 1 ]; then
  command -v nvidia-smi >/dev/null || fail "no nvidia-smi: this machine has no NVIDIA driver (GPU_CHECK_DRY_RUN=1 builds only)"
  nvidia-smi -L | grep -q '^GPU 0' || fail "nvidia-smi lists no GPU"
  "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' ||
    fail "torch $torch_version sees no CUDA device"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  archs=${CUDA_ARCHS:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)}
else
  archs=${CUDA_ARCHS:-9.0}
fi
echo "torch $torch_version at $torch_dir; CUDA archs $archs"

step "dependencies"
prefix_path="$torch_dir/share/cmake"
protoc=()
if compgen -G ".deps/*.deb" >/dev/null; then
  mkdir -p "$deps"
  for f in .deps/*.deb; do dpkg -x "$f" "$deps"; done
  multiarch=$deps/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH="$multiarch:$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_LIBDIR="$multiarch/pkgconfig:$deps/usr/share/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR="$deps"
  prefix_path="$prefix_path;$deps/usr"
  protoc=(-DProtobuf_PROTOC_EXECUTABLE="$deps/usr/bin/protoc"
          -DgRPC_CPP_PLUGIN="$deps/usr/bin/grpc_cpp_plugin")
  export PATH="$deps/usr/bin:$PATH"
  echo "unpacked $(ls .deps/*.deb | wc -l) packages into $deps"
elif ! pkg-config --exists grpc++ 2>/dev/null; then
  fail "no .deps/*.deb and no system gRPC: fetch the packages first (docs/gpu.md)"
fi

if [ -n "${GPU_CHECK_VIDEO:-}" ]; then
  video=$GPU_CHECK_VIDEO
elif pkg-config --exists libavformat libavcodec libswscale libavutil 2>/dev/null; then
  video=ON
  echo "FFmpeg $(pkg-config --modversion libavcodec) (libavcodec): building video decoding"
else
  video=OFF
  echo "no FFmpeg libraries (pkg-config): building without video decoding"
fi

step "configure ($build)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix_path" "${protoc[@]}" \
  -DCLIPSERVE_PYTHON="$python" -DCLIPSERVE_CUDA=ON -DTORCH_CUDA_ARCH_LIST="$archs" \
  -DCLIPSERVE_VIDEO=$video -DCLIPSERVE_BUILD_TESTS=OFF -DCLIPSERVE_GPU_TESTS=ON \
  >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; fail "configure failed"; }

step "build"
targets=(clipserve clipserve-perf clipserve-offline cuda_backend_test)
[ "$video" = ON ] && targets+=(clipserve-decode-compare)
cmake --build "$build" --target "${targets[@]}" \
  >"$out/build.log" 2>&1 || { grep -m20 -B2 -A6 'error' "$out/build.log"; fail "build failed"; }
ldd "$build/server/clipserve" | grep -E 'torch_cuda|libgrpc\+\+|not found' || true
ldd "$build/server/clipserve" | grep -q 'not found' && fail "clipserve has unresolved libraries"

if [ "$dry" = 1 ]; then
  step "dry run: built; stopping before the GPU tests and benchmarks"
  exit 0
fi

step "CUDA tests"
(cd "$build" && ctest -L cuda --output-on-failure -V) >"$out/ctest-cuda.log" 2>&1 &&
  tests=passed || tests=FAILED
grep -E '\[       OK \]|\[  FAILED  \]|precision-check' "$out/ctest-cuda.log" | sed 's/^[0-9]*: //' || true
echo "CUDA tests: $tests"

step "benchmarks"
"$python" bench/gpu_bench.py --build "$build" --out "$out" ${QUICK:+--quick}

# A check that needs video decoding: its one-line result, on stdout and
# appended to summary.md.
video_check() {
  local name=$1 script=$2 line
  if [ "$video" = ON ]; then
    line=$(bash "$script" "$build" "$out" 2>"$out/$name.log") || true
    [ -n "$line" ] || line="$name: FAIL: the check stopped: $(tail -3 "$out/$name.log")"
  else
    line="$name: not checked: this host has no FFmpeg libraries for pkg-config (docs/gpu.md)"
  fi
  echo "$line"
  printf '\n%s\n' "$line" >>"$out/summary.md"
}

step "NVDEC"
video_check NVDEC scripts/lib/nvdec-check.sh
step "live streams"
video_check streams scripts/lib/streams-check.sh

step "done in $(( $(date +%s) - start )) s; CUDA tests $tests; summary: $out/summary.md"
[ "$tests" = passed ]
