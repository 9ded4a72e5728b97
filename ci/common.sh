# Shared by the ci/ scripts: strict mode, the project root, logging.
set -euo pipefail
QLC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export QLC_ROOT
qlc_log() { printf '\033[1m[qlora-compat]\033[0m %s\n' "$*" >&2; }
qlc_jobs() { nproc 2>/dev/null || echo 2; }
