#!/usr/bin/env bash
# The nightly workflow's sequence on this machine, so that what the workflow runs is what CI tests:
# N CPU shards as N "runners" (ci/run_shard.sh, one run folder each), a check that together they
# ran every case of the matrix exactly once, then the merge job (ci/nightly_merge.sh: merge and
# diff against docs/runs).
#   ci/nightly_local.sh [OUT]        (default results/nightly-local)
# QLC_NIGHTLY_SHARDS (default 3) and QLC_NIGHTLY_MATRIX (default cases/smoke.yaml: a dozen cases,
# about a minute on 2 cores; cases/default.yaml for the whole matrix).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out="${1:-$QLC_ROOT/results/nightly-local}"
shards="${QLC_NIGHTLY_SHARDS:-3}"
matrix="${QLC_NIGHTLY_MATRIX:-cases/smoke.yaml}"
build="${QLC_BUILD_DIR:-$QLC_ROOT/build}"
export QLC_BUILD_DIR="$build"
rm -rf "$out"
mkdir -p "$out/runs"
for i in $(seq 1 "$shards"); do
  "$QLC_ROOT/ci/run_shard.sh" "$out/runs/cpu-$i-of-$shards" "$i/$shards" --matrix "$matrix" \
    --device cpu
done
# Every case of the matrix in exactly one shard's records.
(cd "$QLC_ROOT" && "$build/harness/qlora-compat" list --matrix "$matrix" --device cpu) > "$out/expected.txt"
python3 - "$out" "$shards" "$matrix" <<'PY'
import collections, json, pathlib, sys
out, shards, matrix = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
expected = [l for l in (out / "expected.txt").read_text().splitlines() if l]
seen = collections.Counter()
for records in sorted((out / "runs").glob("*/records.jsonl")):
    for line in records.read_text().splitlines():
        if line.strip():
            seen[json.loads(line)["case"]] += 1
twice = sorted(c for c, n in seen.items() if n > 1)
missing = sorted(set(expected) - set(seen))
extra = sorted(set(seen) - set(expected))
if twice or missing or extra:
    sys.exit(f"nightly_local: shards of {matrix}: twice {twice}, missing {missing}, extra {extra}")
print(f"nightly_local: {shards} shards ran the {len(expected)} cases of {matrix}, each once")
PY
"$QLC_ROOT/ci/nightly_merge.sh" "$out/runs" "$out"
