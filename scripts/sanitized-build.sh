#!/usr/bin/env bash
# Configures and builds clipserve with clang 14 under AddressSanitizer and
# UndefinedBehaviorSanitizer (every report fatal), with libFuzzer's coverage
# instrumentation and the fuzz targets (-DCLIPSERVE_FUZZ=ON): the build CI
# runs the whole test suite in (scripts/test.sh) and fuzzes with
# (scripts/fuzz.sh). Optimised (-O1) with line tables, so reports name
# files and lines.
#   bash scripts/sanitized-build.sh [BUILD_DIR (default build-asan)] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
shift || true
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_C_FLAGS_RELEASE=-O1 -DCMAKE_CXX_FLAGS_RELEASE=-O1 \
    -DCLIPSERVE_SANITIZE=address,undefined -DCLIPSERVE_FUZZ=ON
fi
cmake --build "$build" -j "$(nproc)" ${1:+--target "$@"}
