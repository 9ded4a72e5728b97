#!/usr/bin/env bash
# Creates .venv (Python 3) with the PyTorch wheel whose LibTorch the build uses, and the peers
# the differential tests need. Re-running installs only what is missing.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
venv="${QLC_VENV:-$QLC_ROOT/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  qlc_log "creating $venv"
  python3 -m venv "$venv"
fi
if "$venv/bin/python" - "$QLC_ROOT/ci/requirements-venv.txt" <<'PY' 2>/dev/null; then
import sys, re
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split('#')[0].strip()
    if not line:
        continue
    name, _, want = line.partition('==')
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if want and have.split('+')[0] != want:
        sys.exit(1)
PY
  qlc_log "venv: requirements present"
else
  qlc_log "installing venv requirements (torch's wheel is large the first time)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$QLC_ROOT/ci/requirements-venv.txt"
fi
# The older stacks' releases, each in a folder of its own that the peer puts ahead of the venv's.
while read -r stack requirement; do
  case "$stack" in ''|'#'*) continue ;; esac
  target="$venv/stacks/$stack"
  [ -f "$target/.installed" ] && grep -qxF "$requirement" "$target/.installed" && continue
  qlc_log "venv: installing $requirement for stack $stack"
  rm -rf "$target"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --target "$target" \
    "$requirement"
  echo "$requirement" > "$target/.installed"
done < "$QLC_ROOT/ci/requirements-older-stacks.txt"
