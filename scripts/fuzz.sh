#!/usr/bin/env bash
# Fuzzes one of the video library's entry points with libFuzzer (clang 14,
# AddressSanitizer, UndefinedBehaviorSanitizer), from the seed videos of
# tests/fuzz/make_seeds.sh:
#
#   bash scripts/fuzz.sh decode_clip|stream_decoder [SECONDS (default 60)]
#
# Builds into build-fuzz/ (only the video library and the fuzz target);
# crashes and the grown corpus stay in build-fuzz/fuzz-TARGET/. CI runs the
# same targets on fixed mutants instead (ctest -R fuzz.).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh decode_clip|stream_decoder [SECONDS]}
seconds=${2:-60}
case $target in decode_clip|stream_decoder) ;; *) echo "unknown target $target" >&2; exit 64;; esac
build=${BUILD_DIR:-build-fuzz}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -g"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCLIPSERVE_FUZZ=ON -DCLIPSERVE_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target "${target}_fuzzer"
work=$build/fuzz-$target
mkdir -p "$work/corpus" "$work/crashes"
[ -d "$work/seeds" ] || bash tests/fuzz/make_seeds.sh "$work/seeds"
"$build/tests/fuzz/${target}_fuzzer" -max_total_time="$seconds" -max_len=1048576 \
  -timeout=20 -rss_limit_mb=4096 -artifact_prefix="$work/crashes/" \
  "$work/corpus" "$work/seeds/$target"
