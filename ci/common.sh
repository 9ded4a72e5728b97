# Shared by the ci/ scripts: strict mode, the project root, logging.
set -euo pipefail
QLC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export QLC_ROOT
qlc_log() { printf '\033[1m[qlora-compat]\033[0m %s\n' "$*" >&2; }
qlc_jobs() { nproc 2>/dev/null || echo 2; }
# ccache: paths relative to the checkout, so that a fresh clone in another folder (every CI run)
# still hits the cache of the last one.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$QLC_ROOT}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-true}"
# Three LibTorch builds (wheel, Debian, CUDA) and their objects: ccache's default 5 GB evicts
# between runs.
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-20G}"
