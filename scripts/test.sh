#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine and runs every test:
#   1. installs the Debian packages and the venv (scripts/install-deps.sh);
#   2. builds everything with clang under AddressSanitizer and
#      UndefinedBehaviorSanitizer (scripts/sanitized-build.sh, build-asan/)
#      and runs the whole suite there with ctest: unit and integration tests,
#      the real server included, where any sanitizer report fails the test
#      (tests/sanitizers/: the few suppressions, all for third-party code);
#   3. fuzzes each parser for FUZZ_SECONDS (default 30) with libFuzzer
#      (scripts/fuzz.sh --all); any finding fails;
#   4. builds the batcher and the server's concurrency tests under
#      ThreadSanitizer (build-tsan/) and runs them there.
# The Release build users run (scripts/build.sh) is what scripts/demo.sh and
# the container (scripts/container-test.sh) build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

started=$SECONDS
phase() { echo "== $* (at $((SECONDS - started)) s)"; }

phase "sanitized build"
bash scripts/sanitized-build.sh build-asan
phase "the suite under ASan + UBSan"
supp=$PWD/tests/sanitizers
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
ctest --test-dir build-asan --output-on-failure -j "$(nproc)" --timeout 900

phase "fuzzing"
bash scripts/fuzz.sh --all "${FUZZ_SECONDS:-30}"

phase "ThreadSanitizer"
# The batcher and the server's core (CLIPSERVE_SERVER_CORE: ServedModel,
# DecodePool, InferenceStatistics, WindowBuffer; no gRPC, LibTorch or
# FFmpeg) with their tests. Configured every time (a second of work), so
# that a build-tsan/ from before CLIPSERVE_SERVER_CORE gets it too.
tsan_dir=build-tsan
cmake -S . -B "$tsan_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCLIPSERVE_BATCHING_ONLY=ON -DCLIPSERVE_SERVER_CORE=ON -DCLIPSERVE_SANITIZE=thread
cmake --build "$tsan_dir" -j "$(nproc)"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir "$tsan_dir" --output-on-failure --timeout 600
phase "done"
