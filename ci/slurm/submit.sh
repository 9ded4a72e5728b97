#!/usr/bin/env bash
# A matrix over a Slurm cluster: N array tasks (one shard and one GPU each), then a merge job that
# starts when they have all ended.
#   ci/slurm/submit.sh N RUNS_DIR OUT [qlora-compat run options, e.g. --matrix cases/default.yaml]
# Extra sbatch options (partition, account) go in $QLC_SBATCH_ARGS; $QLC_SLURM_GPUS GPUs per task
# (default 1; 0 for CPU-only nodes), $QLC_SLURM_CPUS CPUs per task (default 4). Prints the job ids.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ $# -lt 3 ]; then
  echo "usage: ci/slurm/submit.sh N RUNS_DIR OUT [qlora-compat run options]" >&2
  exit 1
fi
n="$1" runs="$2" out="$3"
shift 3
cd "$root"
# shellcheck disable=SC2086
gpus="${QLC_SLURM_GPUS:-1}"
gpu_args=()
[ "$gpus" -gt 0 ] && gpu_args=(--gpus-per-task="$gpus")
array="$(sbatch --parsable ${QLC_SBATCH_ARGS:-} "${gpu_args[@]}" --cpus-per-task="${QLC_SLURM_CPUS:-4}" --array="1-$n" ci/slurm/shard_array.sbatch "$runs" "$@")"
# shellcheck disable=SC2086
merge="$(sbatch --parsable ${QLC_SBATCH_ARGS:-} --dependency="afterany:${array%%;*}" \
  ci/slurm/merge.sbatch "$runs" "$out")"
echo "shards: job $array (array 1-$n); merge: job $merge"
