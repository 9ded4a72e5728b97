#!/usr/bin/env bash
# Configures and builds one CMake build tree.
#   ci/build.sh [build-dir] [extra cmake arguments...]
# Default: build/ against the venv's LibTorch, CUDA kernels on when nvcc is found. Builds every
# target, or only those in $QLC_BUILD_TARGETS (space-separated).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
build_dir="${1:-$QLC_ROOT/build}"
shift || true
cmake -S "$QLC_ROOT" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
targets=()
for t in ${QLC_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build_dir" -j "$(qlc_jobs)" "${targets[@]}"
