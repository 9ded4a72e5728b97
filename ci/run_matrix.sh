#!/usr/bin/env bash
# The project's main command (README): installs what is missing, builds qlora-compat and runs the
# default matrix (cases/default.yaml) on the local device (auto: the first usable GPU, else the CPU).
#   ci/run_matrix.sh [qlora-compat run options...]
# Results go to $QLC_OUT (default: results/run-<UTC time>): records.jsonl (one line per case, as it
# ends), environment.json, and the reports written from them when the run ends (report.md,
# report.csv, report.json, ...: every format of `qlora-compat report`). An interrupted run continues with
#   QLC_OUT=results/run-<time> ci/run_matrix.sh --resume
# Other options (--filter, --jobs, --steps, --timeout, --device, --matrix ...) go to `run`; see
# build/harness/qlora-compat run --help. Exit status: that of `qlora-compat run` (or 1 when the
# reports cannot be written).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$QLC_ROOT"

"$QLC_ROOT/ci/install_system_deps.sh"
"$QLC_ROOT/ci/setup_venv.sh"
QLC_BUILD_TARGETS=qlora-compat "$QLC_ROOT/ci/build.sh" "$QLC_ROOT/build"

out="${QLC_OUT:-$QLC_ROOT/results/run-$(date -u +%Y%m%dT%H%M%SZ)}"
qlc_log "running cases/default.yaml on device auto; results in $out"
cli="$QLC_ROOT/build/harness/qlora-compat"
set +e
"$cli" run --matrix "$QLC_ROOT/cases/default.yaml" --device auto --out "$out" "$@"
rc=$?
set -e
# The reports, also after a run with a harness error (rc 2); not after bad input (nothing ran).
# Their rules file is the run's: --rules if given, else rules.yaml beside the matrix.
if [ -f "$out/records.jsonl" ] && [ "$rc" -ne 1 ]; then
  matrix="$QLC_ROOT/cases/default.yaml" rules="" prev=""
  for a in "$@"; do
    case "$prev" in --matrix) matrix="$a" ;; --rules) rules="$a" ;; esac
    prev="$a"
  done
  [ -n "$rules" ] || rules="$(dirname "$matrix")/rules.yaml"
  rules_args=()
  [ "$rules" != none ] && [ -f "$rules" ] && rules_args=(--rules "$rules")
  qlc_log "reports of $out:"
  "$cli" report --in "$out" "${rules_args[@]}" || exit 1
fi
exit "$rc"
