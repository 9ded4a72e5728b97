#!/usr/bin/env bash
# Runs the kernel benchmarks and prints each kernel's GB/s against a memcpy of the same bytes,
# the ratio, its target and pass/fail (ci/bench_ratios.py). Exit status 1 if a target is missed.
#
#   ci/bench.sh [BENCH_BINARY] [benchmark flags...]
#   ci/bench.sh build/kernels/bench/qlc_kernels_bench --benchmark_filter=nf4 \
#     --benchmark_repetitions=3
#
# BENCH_BINARY defaults to build/kernels/bench/qlc_kernels_bench. Flags go to the binary as they
# are (the benchmarks run with --benchmark_format=json). When a filter leaves out the memcpy
# baselines that the selected kernels need, a second run measures just those, with the same
# flags. Set QLC_BENCH_JSON=PREFIX to keep the raw JSON (PREFIX.kernels.json, PREFIX.memcpy.json).
# QLC_CPU_ISA and QLC_NUM_THREADS act on the binary.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="build/kernels/bench/qlc_kernels_bench"
if [[ $# -gt 0 && "$1" != -* ]]; then
  bench="$1"
  shift
fi
if [[ ! -x "$bench" ]]; then
  echo "bench.sh: no benchmark binary at '$bench' (build with -DQLC_ENABLE_BENCHMARKS=ON)" >&2
  exit 2
fi

others=()  # every flag but the filter, for the baseline run
for a in "$@"; do
  case "$a" in
    --benchmark_filter=*) ;;
    *) others+=("$a") ;;
  esac
done

if [[ -n "${QLC_BENCH_JSON:-}" ]]; then
  prefix="$QLC_BENCH_JSON"
else
  prefix="$(mktemp -d)/bench"
  trap 'rm -rf "$(dirname "$prefix")"' EXIT
fi
kernels_json="$prefix.kernels.json"
memcpy_json="$prefix.memcpy.json"

"$bench" --benchmark_format=json "$@" >"$kernels_json"
files=("$kernels_json")
baselines="$(python3 "$here/bench_ratios.py" --needed-baselines "$kernels_json")"
if [[ -n "$baselines" ]]; then
  "$bench" --benchmark_format=json "${others[@]}" --benchmark_filter="$baselines" >"$memcpy_json"
  files+=("$memcpy_json")
fi
python3 "$here/bench_ratios.py" "${files[@]}"
