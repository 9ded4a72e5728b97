#!/usr/bin/env bash
# Configures and builds one CMake build tree.
#   ci/build.sh [build-dir] [extra cmake arguments...]
# Default: build/ against the venv's LibTorch, CUDA kernels on when nvcc is found.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
build_dir="${1:-$QLC_ROOT/build}"
shift || true
cmake -S "$QLC_ROOT" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$build_dir" -j "$(qlc_jobs)"
