#!/usr/bin/env bash
# One runner's share of a nightly run: shard I of N of a matrix on this machine, into a run folder
# of its own (records.jsonl + environment.json), the input of `qlora-compat merge`.
#   ci/run_shard.sh OUT I/N [qlora-compat run options, e.g. --matrix cases/smoke.yaml]
# Builds qlora-compat first when $QLC_BUILD_DIR (default build/) has none. Exit status: that of
# `qlora-compat run` (0 whatever the cases' outcomes; 2 on a harness error; 1 on bad input).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [ $# -lt 2 ]; then
  echo "usage: ci/run_shard.sh OUT I/N [qlora-compat run options]" >&2
  exit 1
fi
out="$1"
shard="$2"
shift 2
build="${QLC_BUILD_DIR:-$QLC_ROOT/build}"
if [ ! -x "$build/harness/qlora-compat" ]; then
  QLC_BUILD_TARGETS=qlora-compat "$QLC_ROOT/ci/build.sh" "$build"
fi
cd "$QLC_ROOT"
qlc_log "shard $shard -> $out"
exec "$build/harness/qlora-compat" run --shard "$shard" --out "$out" "$@"
