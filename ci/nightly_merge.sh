#!/usr/bin/env bash
# The nightly's last job: every runner's run folder merged into one table, diffed against the
# published runs (docs/runs/). Exit status 4 on a regression (what `qlora-compat diff` reports),
# 1 on bad input.
#   ci/nightly_merge.sh RUNS_DIR OUT [BASE]
# RUNS_DIR holds one run folder per runner (each with records.jsonl); OUT receives the merged
# table (merged/) and the diff (diff.txt); BASE defaults to docs/runs.
# `merge` and `diff` are the reports module's commands: until a build has them, this says so on
# one line and stops with status 0 after checking that the runs are there.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [ $# -lt 2 ]; then
  echo "usage: ci/nightly_merge.sh RUNS_DIR OUT [BASE]" >&2
  exit 1
fi
runs_dir="$1"
out="$2"
base="${3:-$QLC_ROOT/docs/runs}"
cli="${QLC_BUILD_DIR:-$QLC_ROOT/build}/harness/qlora-compat"
runs=()
for d in "$runs_dir"/*/; do
  [ -f "$d/records.jsonl" ] && runs+=("${d%/}")
done
if [ ${#runs[@]} -eq 0 ]; then
  echo "ci/nightly_merge.sh: no run folder with a records.jsonl under $runs_dir" >&2
  exit 1
fi
mkdir -p "$out"
if ! "$cli" merge --help >/dev/null 2>&1; then
  qlc_log "merge: this qlora-compat has no 'merge' command yet (reports module); ${#runs[@]} run folders left unmerged in $runs_dir"
  exit 0
fi
"$cli" merge "${runs[@]}" --out "$out/merged"
if [ ! -e "$base" ]; then
  qlc_log "diff: no published runs at $base; nothing to compare with"
  exit 0
fi
set +e
"$cli" diff "$base" "$out/merged" | tee "$out/diff.txt"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || qlc_log "diff: regressions against $base (see $out/diff.txt)"
exit "$rc"
