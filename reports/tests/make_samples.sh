#!/usr/bin/env bash
# CTest fixture of the report checks: writes every report format (`report --format all`) for
#   OUT/real   a real small run (2 cases of cases/default.yaml with its rules, 2 steps: one that
#              works, one predicted failure whose fix is run),
#   OUT/edge, OUT/cut, OUT/empty   the hand-written runs of reports/tests/data (see its README).
# Usage: make_samples.sh QLORA_COMPAT SOURCE_DIR OUT
set -euo pipefail
cli="$1" src="$2" out="$3"
rm -rf "$out"
mkdir -p "$out"
for run in edge cut empty; do
  cp -r "$src/reports/tests/data/$run" "$out/$run"
done
"$cli" run --matrix "$src/cases/default.yaml" --rules "$src/cases/rules.yaml" --device cpu \
  --steps 2 --jobs 2 --out "$out/real" \
  --filter "cpu/nf4-dq/param=bf16/compute=bf16/optim=adamw8bit/amp=none/,cpu/int8/param=fp32/compute=fp32/optim=adamw-fp32/amp=bf16/adapter=peft/kbit=off/ckpt=off/stack=bnb-0.44/" \
  >"$out/real.log" 2>&1 || { cat "$out/real.log"; exit 1; }
for run in real edge cut empty; do
  rules=()
  [ "$run" = real ] && rules=(--rules "$src/cases/rules.yaml")
  listed=$("$cli" report --in "$out/$run" --format all "${rules[@]}")
  for f in report.md report.csv report.json junit.xml report.html; do
    grep -qx "$out/$run/$f" <<<"$listed" || { echo "$run: $f not written: $listed" >&2; exit 1; }
  done
done
echo "reports of real, edge, cut and empty runs in $out"
