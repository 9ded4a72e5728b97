#!/usr/bin/env bash
# ci/gpu_bringup.sh on a machine without an NVIDIA GPU: stops at once (status 1, within seconds)
# with one line on stderr saying so, prints nothing else, and installs, builds or writes nothing.
# Skipped (status 77) on a machine with nvidia-smi: there the bring-up would really run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "skipped: nvidia-smi is present, so ci/gpu_bringup.sh would bring this machine up"
  exit 77
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
before="$(ls -A "$root")"
start=$SECONDS
set +e
"$root/ci/gpu_bringup.sh" --out "$tmp/out" >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
set -e
fail() { echo "FAIL: $*" >&2; echo "--- stdout" >&2; cat "$tmp/stdout" >&2; echo "--- stderr" >&2; cat "$tmp/stderr" >&2; exit 1; }
[ "$rc" -eq 1 ] || fail "exit status $rc, expected 1"
[ $((SECONDS - start)) -le 10 ] || fail "took $((SECONDS - start)) s: it did not stop at once"
[ ! -s "$tmp/stdout" ] || fail "printed on stdout"
[ "$(wc -l <"$tmp/stderr")" -eq 1 ] || fail "expected one line on stderr"
grep -q "no NVIDIA GPU on this machine" "$tmp/stderr" || fail "the line does not say there is no GPU"
[ ! -e "$tmp/out" ] || fail "created the output folder"
[ "$(ls -A "$root")" = "$before" ] || fail "changed the checkout's top folder"
echo "ci/gpu_bringup.sh without a GPU: $(cat "$tmp/stderr")"
