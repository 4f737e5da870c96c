#!/usr/bin/env bash
# Fuzzes clipserve's parsers with libFuzzer (clang 14, AddressSanitizer and
# UndefinedBehaviorSanitizer), one entry point per kind of untrusted input
# (tests/fuzz/CMakeLists.txt lists them and what each calls):
#
#   bash scripts/fuzz.sh --list             the target names, one a line
#   bash scripts/fuzz.sh TARGET [SECONDS]   fuzz one target (default 60 s)
#   bash scripts/fuzz.sh --all SECONDS      each target in turn, SECONDS each
#
# Builds the TARGET_fuzzer binaries in the sanitizer build (BUILD_DIR,
# default build-asan; configured by scripts/sanitized-build.sh, the build CI
# runs the whole suite in). Each target starts from the seeds of
# tests/fuzz/make_seeds.sh, its dictionary (tests/fuzz/dicts/TARGET.dict)
# where there is one, and its corpus so far (BUILD_DIR/fuzz/TARGET/corpus,
# kept between runs). Any crash, leak, timeout (20 s), memory blow-up
# (4 GiB of RSS, or one allocation of 2 GiB) or sanitizer report stops the run: the input is saved as
# BUILD_DIR/fuzz/TARGET/crashes/crash-*; copy it to
# tests/fuzz/regressions/TARGET-<what> so that ctest replays it from then on.
# Exits non-zero on any finding. Prints one line per target:
#   fuzz TARGET: N runs in S s, corpus C inputs, no finding
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(decode_clip stream_decoder model_config safetensors pth kserve_infer
         classify_request npy)
usage() {
  echo "usage: scripts/fuzz.sh --list | TARGET [SECONDS] | --all SECONDS" >&2
  exit 64
}
case ${1:-} in
  --list) printf '%s\n' "${targets[@]}"; exit 0 ;;
  --all) [ $# -eq 2 ] || usage; run=("${targets[@]}"); seconds=$2 ;;
  ""|-*) usage ;;
  *)
    [[ " ${targets[*]} " == *" $1 "* ]] || { echo "unknown target $1 (--list)" >&2; exit 64; }
    run=("$1"); seconds=${2:-60} ;;
esac
build=${BUILD_DIR:-build-asan}
bash scripts/sanitized-build.sh "$build" "${run[@]/%/_fuzzer}" >/dev/null

work=$build/fuzz
if [ ! -d "$work/seeds" ]; then
  rm -rf "$work/seeds.tmp"
  bash tests/fuzz/make_seeds.sh "$work/seeds.tmp"
  mv "$work/seeds.tmp" "$work/seeds"
fi
failed=0
for target in "${run[@]}"; do
  dir=$work/$target
  mkdir -p "$dir/corpus" "$dir/crashes"
  args=(-max_total_time="$seconds" -max_len=1048576 -timeout=20
        -rss_limit_mb=4096 -malloc_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$dir/crashes/")
  [ -f "tests/fuzz/dicts/$target.dict" ] && args+=(-dict="tests/fuzz/dicts/$target.dict")
  log=$dir/last-run.log
  # ASan's leak check runs after each input; a leak fails the run like a
  # crash. The suppressions are the suite's (third-party defects only).
  if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:suppressions=$PWD/tests/sanitizers/ubsan.supp \
     LSAN_OPTIONS=suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0 \
     ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:quarantine_size_mb=256 \
     "$build/tests/fuzz/${target}_fuzzer" "${args[@]}" "$dir/corpus" \
     "$work/seeds/$target" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz $target: ${runs:-?} runs in $seconds s, corpus $(ls "$dir/corpus" | wc -l) inputs, no finding"
  else
    failed=1
    echo "fuzz $target: FINDING (log $log, inputs $dir/crashes/):"
    grep -m1 -E "ERROR: |runtime error|SUMMARY" "$log" || tail -20 "$log"
  fi
done
exit $failed
