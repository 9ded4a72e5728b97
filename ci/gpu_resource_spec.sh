#!/usr/bin/env bash
# Prints a CTest resource specification with one "gpus" resource per NVIDIA GPU (nvidia-smi), so
# that `ctest --resource-spec-file FILE -j N` gives each GPU case test a GPU of its own:
#   ci/gpu_resource_spec.sh > build/gpus.json && ctest --test-dir build -L cuda \
#     --resource-spec-file build/gpus.json -j "$(nvidia-smi -L | wc -l)"
# Without nvidia-smi or GPUs it prints a spec with no GPUs (GPU case tests then cannot start:
# CTest says so).
set -euo pipefail
ids=()
if command -v nvidia-smi >/dev/null 2>&1; then
  while IFS= read -r i; do [[ -n "$i" ]] && ids+=("$i"); done \
    < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null || true)
fi
entries=""
for i in "${ids[@]}"; do
  entries+="${entries:+, }{\"id\": \"$i\", \"slots\": 1}"
done
printf '{"version": {"major": 1, "minor": 0}, "local": [{"gpus": [%s]}]}\n' "$entries"
