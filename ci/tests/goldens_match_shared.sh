#!/usr/bin/env bash
# The golden vectors shipped in kernels/tests/goldens/bnb-4bit must be a byte-for-byte copy of the project's
# shared set (../shared/goldens/bnb-4bit beside the project root) wherever that set exists, so the two never
# drift apart. A clone without the shared set (a CI runner) has only the copy: skip (77), saying so.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
shipped="$root/kernels/tests/goldens/bnb-4bit"
shared="$root/../shared/goldens/bnb-4bit"
if [ ! -d "$shared" ]; then
  echo "goldens_match_shared: no shared golden set beside the project root; the shipped copy is the only one"
  exit 77
fi
if ! diff -r -q "$shared" "$shipped"; then
  echo "goldens_match_shared: kernels/tests/goldens/bnb-4bit differs from ../shared/goldens/bnb-4bit" \
       "(above); copy the shared set over the shipped one:" \
       "cp -r ../shared/goldens/bnb-4bit/. kernels/tests/goldens/bnb-4bit/" >&2
  exit 1
fi
echo "goldens_match_shared: the shipped bnb-4bit goldens are identical to the shared set ($(find "$shipped" -type f | wc -l) files)"
