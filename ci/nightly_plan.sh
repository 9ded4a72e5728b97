#!/usr/bin/env bash
# The nightly workflow's job matrix, from ci/gpu_runners.json: one job per runner machine, each
# running shard I of N (N = that GPU type's machine count), printed as GitHub's step output line
#   matrix={"include": [{"name": "a100", "shard": "1/2", "labels": [...], "gpu": true}, ...]}
# It also checks the file: unique names, labels present, machines >= 1, and every GPU's arch in
# the kernels' architecture list (cmake/QlcCuda.cmake), so a new GPU type cannot be added to the
# nightly without the kernels being compiled for it.
#   ci/nightly_plan.sh [RUNNERS_JSON]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
runners="${1:-$QLC_ROOT/ci/gpu_runners.json}"
python3 - "$runners" "$QLC_ROOT/cmake/QlcCuda.cmake" <<'PY'
import json, re, sys
path, cuda_cmake = sys.argv[1], sys.argv[2]
def fail(msg):
    sys.exit(f"{path}: {msg}")
try:
    spec = json.load(open(path))
except (OSError, ValueError) as e:
    fail(f"cannot read: {e}")
m = re.search(r"set\(QLC_DEFAULT_CUDA_ARCHITECTURES ([0-9 ]+)\)", open(cuda_cmake).read())
if not m:
    sys.exit(f"{cuda_cmake}: no QLC_DEFAULT_CUDA_ARCHITECTURES list found")
archs = {"sm_" + a for a in m.group(1).split()}
include, names = [], set()
for i, r in enumerate(spec.get("runners", [])):
    where = f"runners[{i}]"
    name = r.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9-]+", name):
        fail(f"{where}: name must be lower-case letters, digits and '-', got {name!r}")
    if name in names:
        fail(f"{where}: name {name!r} appears twice")
    names.add(name)
    labels = r.get("labels")
    if not labels or not all(isinstance(l, str) and l for l in labels):
        fail(f"{where} ({name}): labels must be a non-empty list of strings")
    n = r.get("machines")
    if not isinstance(n, int) or n < 1:
        fail(f"{where} ({name}): machines must be an integer >= 1, got {n!r}")
    gpu = r.get("gpu") is not None
    if gpu and r.get("arch") not in archs:
        fail(f"{where} ({name}): arch {r.get('arch')!r} is not one the kernels are compiled for "
             f"({', '.join(sorted(archs, key=lambda a: int(a[3:])))}, cmake/QlcCuda.cmake)")
    for s in range(1, n + 1):
        include.append({"name": name, "shard": f"{s}/{n}", "run": f"{name}-{s}-of-{n}",
                        "labels": labels, "gpu": gpu})
if not include:
    fail("no runners")
print("matrix=" + json.dumps({"include": include}, separators=(",", ":")))
PY
