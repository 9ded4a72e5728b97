#!/usr/bin/env bash
# The CUDA build of LibTorch: PyTorch's torch==2.14.1 CUDA 13 wheel (about 5.5 GB with the CUDA
# library wheels it pulls in), in a virtual environment OUTSIDE the checkout so that every clone
# (each CI run) reuses it: ${QLC_CUDA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/qlora-compat/venv-cuda}.
# Prints the venv's python. Re-running installs nothing when torch 2.14.1 is there.
# Users with a CUDA LibTorch of their own skip this and pass -DTorch_DIR=... (README).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
want="2.14.1"
venv="${QLC_CUDA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/qlora-compat/venv-cuda}"
if [ ! -x "$venv/bin/python" ]; then
  qlc_log "creating $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
have="$("$venv/bin/python" -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>/dev/null || true)"
if [ "${have%%+*}" != "$want" ] || [ "${have##* }" = "None" ] || [ -z "$have" ]; then
  qlc_log "installing torch==$want (CUDA build) into $venv (about 5.5 GB the first time)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "torch==$want" >&2
  have="$("$venv/bin/python" -c 'import torch; print(torch.__version__, torch.version.cuda)')"
  if [ "${have##* }" = "None" ]; then
    echo "ci/setup_cuda_venv.sh: torch $have in $venv is a CPU-only build; a CUDA one is needed" >&2
    exit 1
  fi
fi
qlc_log "CUDA LibTorch: torch $have in $venv"
echo "$venv/bin/python"
