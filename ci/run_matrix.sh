#!/usr/bin/env bash
# The project's main command (README): installs what is missing, builds qlora-compat and runs the
# default matrix (cases/default.yaml) on the local device (auto: the first usable GPU, else the CPU).
#   ci/run_matrix.sh [qlora-compat run options...]
# Results go to $QLC_OUT (default: results/run-<UTC time>): records.jsonl (one line per case, as it
# ends) and environment.json. An interrupted run continues with
#   QLC_OUT=results/run-<time> ci/run_matrix.sh --resume
# Other options (--filter, --jobs, --steps, --timeout, --device, --matrix ...) go to `run`; see
# build/harness/qlora-compat run --help. Exit status: that of `qlora-compat run`.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$QLC_ROOT"

"$QLC_ROOT/ci/install_system_deps.sh"
"$QLC_ROOT/ci/setup_venv.sh"
QLC_BUILD_TARGETS=qlora-compat "$QLC_ROOT/ci/build.sh" "$QLC_ROOT/build"

out="${QLC_OUT:-$QLC_ROOT/results/run-$(date -u +%Y%m%dT%H%M%SZ)}"
qlc_log "running cases/default.yaml on device auto; results in $out"
exec "$QLC_ROOT/build/harness/qlora-compat" run --matrix "$QLC_ROOT/cases/default.yaml" \
  --device auto --out "$out" "$@"
