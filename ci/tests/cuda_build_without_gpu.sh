#!/usr/bin/env bash
# Checks a build against a CUDA LibTorch (ci/build_cuda.sh) on a machine where no GPU is usable:
#  1. the kernels' CUDA library holds device code for exactly the architectures of
#     cmake/QlcCuda.cmake (cuobjdump --list-elf: the toolkit's, or the CUDA wheel's Triton's);
#  2. `qlora-compat env` is a CUDA LibTorch's (runtime_version present) and says why no GPU is
#     usable (cuda.available false, cuda.reason);
#  3. the GPU self-checks skip, each with that reason.
#   ci/tests/cuda_build_without_gpu.sh BUILD_DIR
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$1"
fail() { echo "FAIL: $*" >&2; exit 1; }

lib="$build/kernels/src/cuda/libqlc_kernels_cuda.a"
[ -f "$lib" ] || fail "$lib not built"
# The project's list (a build configured with another list fails here, as it should in CI).
want="$(sed -n 's/^set(QLC_DEFAULT_CUDA_ARCHITECTURES \([0-9 ]*\)).*/\1/p' "$root/cmake/QlcCuda.cmake" |
        tr ' ' '\n' | grep . | sed 's/^/sm_/' | sort -u)"
[ -n "$want" ] || fail "no QLC_DEFAULT_CUDA_ARCHITECTURES list in cmake/QlcCuda.cmake"
# cuobjdump: the toolkit's, else the one the CUDA wheel's Triton ships (a compiler-only toolkit,
# as on CI's machines, has none).
objdump="$(command -v cuobjdump || true)"
[ -n "$objdump" ] || objdump="$(find "${CUDA_PATH:-/usr/local/cuda}/bin" "${QLC_CUDA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/qlora-compat/venv-cuda}" \
  -name cuobjdump -type f -perm -u+x 2>/dev/null | head -1)"
[ -n "$objdump" ] || fail "cuobjdump not found (CUDA toolkit or the CUDA venv's triton)"
have="$("$objdump" --list-elf "$lib" | grep -o 'sm_[0-9]*' | sort -u)"
[ "$have" = "$want" ] || fail "device code for [$(echo $have)], expected [$(echo $want)]"
echo "device code for: $(echo $have)"

env_json="$("$build/harness/qlora-compat" env)"
reason="$(printf '%s' "$env_json" | python3 -c '
import json, sys
cuda = json.load(sys.stdin)["facts"]["cuda"]
if cuda.get("available"):
    sys.exit("a GPU is usable here: this check is for machines without one")
if "runtime_version" not in cuda:
    sys.exit("qlora-compat env reports no CUDA runtime: not a CUDA LibTorch build")
if not cuda.get("reason"):
    sys.exit("qlora-compat env gives no reason why no GPU is usable")
print(cuda["reason"])
')" || fail "qlora-compat env: $reason"
echo "qlora-compat env: no usable GPU: $reason"

selfcheck="$(find "$build/kernels/tests" -name gpu_selfcheck_test -type f -perm -u+x | head -1)"
[ -n "$selfcheck" ] || fail "gpu_selfcheck_test not built"
out="$("$selfcheck" --gtest_filter='*_CUDA*' 2>&1)" || fail "gpu_selfcheck_test failed: $out"
skipped="$(printf '%s\n' "$out" | grep -c '^\[  SKIPPED \] .*_CUDA' || true)"
[ "$skipped" -gt 0 ] || fail "no GPU self-check was skipped: $out"
printf '%s\n' "$out" | grep -q "no usable CUDA device: " || fail "the skips give no reason: $out"
echo "GPU self-checks: $skipped skipped, e.g. $(printf '%s\n' "$out" | grep -m1 -o 'no usable CUDA device: .*')"
