#!/usr/bin/env bash
# Configures and builds a tree against a CUDA build of LibTorch, so that every GPU-only line
# (cuda_support.cc's CUDA half, the kernels' CUDA backend, the GPU self-checks and benchmarks)
# compiles and links, with or without a GPU on the machine.
#   ci/build_cuda.sh [build-dir] [extra cmake arguments...]      (default build-cuda/)
# LibTorch: $Torch_DIR when set (your own CUDA LibTorch: the folder holding TorchConfig.cmake),
# else the CUDA wheel of ci/setup_cuda_venv.sh. The CUDA toolkit: $CUDA_PATH, else the one
# nvcc belongs to; TorchConfig's FindCUDA looks for it there.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
build_dir="${1:-$QLC_ROOT/build-cuda}"
shift || true
if ! command -v nvcc >/dev/null 2>&1; then
  echo "ci/build_cuda.sh: nvcc not found: a CUDA toolkit (12.8 or later) is needed to compile the GPU code" >&2
  exit 1
fi
if [ -z "${CUDA_PATH:-}" ]; then
  # nvcc may be a wrapper script; its own -v dry run names the toolkit's folder (TOP=...).
  top="$(nvcc -v --dryrun -x cu /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)"
  CUDA_PATH="$(cd "${top:-$(dirname "$(command -v nvcc)")/..}" && pwd)"
  export CUDA_PATH
fi
torch_args=()
if [ -n "${Torch_DIR:-}" ]; then
  torch_args=(-DTorch_DIR="$Torch_DIR")
else
  torch_args=(-DQLC_PYTHON="$("$QLC_ROOT/ci/setup_cuda_venv.sh")")
fi
qlc_log "CUDA build in $build_dir (toolkit $CUDA_PATH)"
"$QLC_ROOT/ci/build.sh" "$build_dir" -DQLC_ENABLE_CUDA=ON -DCMAKE_CUDA_COMPILER="$CUDA_PATH/bin/nvcc" \
  "${torch_args[@]}" "$@"
