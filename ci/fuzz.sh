#!/usr/bin/env bash
# The project's fuzzing (fuzz/, clang): builds the four libFuzzer targets and the ASan + UBSan
# build of the core unit tests, runs those tests, replays every file of fuzz/corpus/ and
# fuzz/regressions/, then fuzzes each target for BUDGET seconds (default 60) from a copy of its
# corpus (new inputs stay in the build folder, never in the repository). Exits non-zero on any
# finding; the input that found it is saved as build-fuzz/findings-<target>-*.
# Usage: ci/fuzz.sh [BUDGET_SECONDS]     (the long run: QLC_FUZZ_SEED=$RANDOM ci/fuzz.sh 3600)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$QLC_ROOT"
budget="${1:-60}"
build="${QLC_FUZZ_BUILD:-$QLC_ROOT/build-fuzz}"
targets=(safetensors matrix rules records)

qlc_log "fuzz: building the targets and the sanitized core tests (clang) in $build"
cmake -S fuzz -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$build" -j "$(qlc_jobs)"
qlc_log "fuzz: the core unit tests under ASan + UBSan"
ctest --test-dir "$build" -L sanitizers -j "$(qlc_jobs)" --output-on-failure --timeout 600

# -rss_limit_mb: an input may not make a parser take more than 2 GiB (the matrix of 6 GB once);
# -timeout: nor more than 10 s; -max_len: inputs up to 64 KiB.
options=(-rss_limit_mb=2048 -timeout=10 -max_len=65536)
# A fixed seed (QLC_FUZZ_SEED, default 1): the same build explores the same inputs in the same
# order, so a CI run that passed here passes there; the long runs may take others.
seed="${QLC_FUZZ_SEED:-1}"
total=0
for t in "${targets[@]}"; do
  "$build/fuzz_$t" -runs=0 "${options[@]}" "fuzz/corpus/$t" "fuzz/regressions/$t" \
    >"$build/replay-$t.log" 2>&1 || { cat "$build/replay-$t.log"; echo "fuzz: $t: a corpus or regression input fails" >&2; exit 1; }
  mkdir -p "$build/corpus-$t"
  "$build/fuzz_$t" "${options[@]}" -seed="$seed" -max_total_time="$budget" -print_final_stats=1 \
    -dict="fuzz/dictionaries/$t.dict" -artifact_prefix="$build/findings-$t-" \
    "$build/corpus-$t" "fuzz/corpus/$t" >"$build/fuzz-$t.log" 2>&1 ||
    { tail -40 "$build/fuzz-$t.log"; echo "fuzz: $t: finding (input in $build/findings-$t-*)" >&2; exit 1; }
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/fuzz-$t.log")
  total=$((total + ${execs:-0}))
  qlc_log "fuzz: $t: ${execs:-?} inputs in ${budget}s, no finding (corpus and regressions replayed)"
done
qlc_log "fuzz: ${total} inputs over ${#targets[@]} targets, no finding"
