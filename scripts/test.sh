#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine and runs every test:
#   1. installs the Debian packages (scripts/install-deps.sh),
#   2. builds everything and runs the whole suite with ctest,
#   3. builds the batching library alone under ThreadSanitizer and runs its
#      tests again there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 600

echo "== batching tests under ThreadSanitizer"
tsan_dir=build-tsan
if [ ! -f "$tsan_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$tsan_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCLIPSERVE_BATCHING_ONLY=ON -DCLIPSERVE_SANITIZE=thread
fi
cmake --build "$tsan_dir" -j "$(nproc)"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir "$tsan_dir" --output-on-failure --timeout 600
