#!/usr/bin/env bash
# CTest's own way to shard the case tests over machines, as the README documents it:
#   ctest --test-dir build -L case -I I,,N      (I = 1..N: every N-th test from the I-th)
# Checks, for each N given, that the N shards together list every case test exactly once.
# Uses `ctest -N` (lists, runs nothing). The fixture tests (results reset and collect) are left
# out of the comparison: CTest adds them to every shard that needs them.
#   harness/tests/e2e/ctest_stride_shards.sh BUILD_DIR N...
set -euo pipefail
build="$1"
shift
case_tests() {
  ctest --test-dir "$build" -N -L case "$@" |
    sed -n 's/^ *Test *#[0-9]*: //p' |
    grep -v -e '^case_results_reset$' -e '^case results: ' -e '^case_tests_unavailable$' || true
}
all="$(case_tests | sort)"
total="$(printf '%s\n' "$all" | grep -c . || true)"
if [ "$total" -eq 0 ]; then
  echo "FAIL: ctest -N -L case lists no case test in $build" >&2
  exit 1
fi
for n in "$@"; do
  union="$(for i in $(seq 1 "$n"); do case_tests -I "$i,,$n"; done | sort)"
  twice="$(printf '%s\n' "$union" | uniq -d)"
  if [ -n "$twice" ]; then
    echo "FAIL: with -I I,,$n these case tests are in two shards:" >&2
    printf '%s\n' "$twice" >&2
    exit 1
  fi
  if [ "$union" != "$all" ]; then
    echo "FAIL: with -I I,,$n the shards miss these case tests:" >&2
    comm -23 <(printf '%s\n' "$all") <(printf '%s\n' "$union") >&2
    exit 1
  fi
  echo "ctest -L case -I I,,$n for I = 1..$n: each of the $total case tests in exactly one shard"
done
