#!/usr/bin/env bash
# Brings up a new NVIDIA GPU machine, in one command (README "On a GPU machine"):
#  1. stops at once, with one line saying so, when the machine has no usable NVIDIA GPU;
#  2. installs what is missing (Debian packages, the CUDA LibTorch venv unless $Torch_DIR is set);
#  3. builds against the CUDA LibTorch (ci/build_cuda.sh, folder build-gpu/);
#  4. runs the GPU self-checks (ctest -L unit -L cuda), then the kernels' GPU benchmarks (each
#     kernel's bytes/s over a device-to-device copy's, measured in the same run);
#  5. runs every case test on every GPU (ctest -L case with the resource spec: each GPU runs its own
#     cases), JUnit XML for CI dashboards (one test per case);
#  6. leaves the run folder in OUT: records.jsonl, environment.json, junit-*.xml, bench.txt.
#   ci/gpu_bringup.sh [--out DIR] [--shard I/N]
# --shard I/N runs only every N-th case test from the I-th (ctest -I I,,N), for a GPU type with
# several machines; OUT defaults to results/bringup-<UTC time>.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out="" shard=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --shard) shard="$2"; shift 2 ;;
    *) echo "usage: ci/gpu_bringup.sh [--out DIR] [--shard I/N]" >&2; exit 1 ;;
  esac
done

# 1. A GPU, before anything is installed or built.
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus="$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | grep -c . || true)"
fi
if [ "$gpus" -eq 0 ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then why="nvidia-smi lists no GPU"; else why="nvidia-smi not found"; fi
  echo "ci/gpu_bringup.sh: no NVIDIA GPU on this machine ($why): nothing to bring up" >&2
  exit 1
fi
ctest_shard=()
if [ -n "$shard" ]; then
  if ! [[ "$shard" =~ ^([0-9]+)/([0-9]+)$ ]] || [ "${BASH_REMATCH[1]}" -lt 1 ] ||
     [ "${BASH_REMATCH[1]}" -gt "${BASH_REMATCH[2]}" ]; then
    echo "ci/gpu_bringup.sh: --shard '$shard': expected I/N with 1 <= I <= N" >&2
    exit 1
  fi
  ctest_shard=(-I "${BASH_REMATCH[1]},,${BASH_REMATCH[2]}")
fi
out="${out:-$QLC_ROOT/results/bringup-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
build="$QLC_ROOT/build-gpu"
qlc_log "$gpus GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | xargs)"

# 2-3. Install and build.
"$QLC_ROOT/ci/install_system_deps.sh"
"$QLC_ROOT/ci/build_cuda.sh" "$build" -DQLC_ENABLE_PEER_TESTS=OFF

# 4. GPU self-checks, then the GPU benchmarks.
ctest --test-dir "$build" -L unit -L cuda --output-on-failure --output-junit "$out/junit-gpu-selfcheck.xml"
"$build/kernels/bench/cuda/qlc_kernels_cuda_bench" | tee "$out/bench.txt"

# 5. Every case test, each GPU running its own.
"$QLC_ROOT/ci/gpu_resource_spec.sh" > "$build/gpus.json"
set +e
ctest --test-dir "$build" -L case "${ctest_shard[@]}" --resource-spec-file "$build/gpus.json" \
  -j "$gpus" --output-junit "$out/junit-cases.xml"
cases_rc=$?
set -e

# 6. The run folder (the case tests' records, gathered by their collect fixture).
cp "$build/case-results/records.jsonl" "$out/"
"$build/harness/qlora-compat" env > "$out/environment.json"
qlc_log "run folder: $out"
exit "$cases_rc"
