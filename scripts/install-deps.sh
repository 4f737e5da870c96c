#!/usr/bin/env bash
# Installs what clipserve builds, tests and runs with. Idempotent.
#   1. Debian 12 packages (apt; root or sudo): compilers (GCC; clang 14 with
#      its sanitizer and libFuzzer runtimes for scripts/sanitized-build.sh), gRPC, Protobuf,
#      Abseil, prometheus-cpp, OpenCV/FFmpeg, GoogleTest, Python.
#   2. The project's virtual environment .venv (PyPI, pinned and hash-checked
#      in scripts/requirements/venv.txt): torch 2.11 (whose LibTorch the C++
#      code builds against), numpy, tritonclient, the deploy checks.
#      Reinstalled only when venv.txt changes.
#   3. Checks that the CUDA 13 toolkit's runtime libraries are there: LibTorch
#      2.11's CUDA libraries load them at start-up (docs/gpu.md).
# Environment: CLIPSERVE_VENV (default <repo>/.venv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${CLIPSERVE_VENV:-$repo/.venv}
log() { echo "install-deps: $*" >&2; }

packages=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev
  protobuf-compiler libprotobuf-dev
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
  libopencv-dev ffmpeg
  prometheus-cpp-dev prometheus python3-yaml
  python3-numpy python3-grpcio python3-grpc-tools python3-matplotlib
  docker-compose
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-venv
)

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  log "all ${#packages[@]} Debian packages present"
else
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- the virtual environment ----
req=$repo/scripts/requirements/venv.txt
stamp=$venv/.clipserve-requirements
# venv.txt and the files it includes (-r), no others.
want=$(cd "$repo/scripts/requirements" &&
       cat venv.txt $(sed -n 's/^-r //p' venv.txt) | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  log "venv $venv up to date"
else
  # Debian's Python (not whatever python3 comes first on PATH): the wheels
  # are pinned for CPython 3.11.
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
  log "pip install --require-hashes -r scripts/requirements/venv.txt into $venv"
  t0=$SECONDS
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    --require-hashes -r "$req"
  echo "$want" >"$stamp"
  log "venv ready in $((SECONDS - t0)) s"
fi

# ---- CUDA runtime libraries for LibTorch's CUDA build ----
# libtorch_cuda.so needs libcudart, cuBLAS, cuDNN 9, cuFFT, cuRAND,
# cuSPARSE, NCCL from the CUDA 13 toolkit (found through ld.so's cache), and
# cuSPARSELt, NVSHMEM and cuFile from the venv (scripts/requirements/venv.txt).
cache=$(/sbin/ldconfig -p)
for lib in libcudart.so.13 libcublas.so.13 libcudnn.so.9 libnccl.so.2 libcufft.so.12 \
           libcurand.so.10 libcusparse.so.12 libcupti.so.13; do
  if ! grep -q "$lib " <<<"$cache"; then
    log "error: $lib is not in ld.so's cache: the CUDA 13 toolkit (with cuDNN 9 and NCCL)" \
        "must be installed and its lib folder listed in /etc/ld.so.conf.d (docs/gpu.md)"
    exit 1
  fi
done
