#!/usr/bin/env bash
# Lints .github/workflows/*.yml offline: actionlint, then the GitHub workflow JSON schema
# (check-jsonschema's built-in copy, vendor.github-workflows). Both come from PyPI
# (ci/requirements-lint.txt) into a venv outside the checkout that every clone reuses:
# ${XDG_CACHE_HOME:-$HOME/.cache}/qlora-compat/venv-lint. Exits non-zero on any finding.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/qlora-compat/venv-lint"
if [ ! -x "$venv/bin/actionlint" ] || [ ! -x "$venv/bin/check-jsonschema" ]; then
  qlc_log "installing the workflow linters into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$QLC_ROOT/ci/requirements-lint.txt"
fi
cd "$QLC_ROOT"
workflows=(.github/workflows/*.yml)
"$venv/bin/actionlint" "${workflows[@]}"
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"
qlc_log "workflows lint clean: ${workflows[*]}"
