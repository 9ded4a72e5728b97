#!/usr/bin/env bash
# The alternate build: bazel test //... offline with Debian's Bazel 4.2 (see WORKSPACE and
# .bazelrc: local repositories only, downloads disabled, --jobs=2). Extra arguments go to bazel.
# Exits non-zero when the build or a test fails.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$QLC_ROOT"

if ! command -v bazel >/dev/null 2>&1; then
  echo "ci/bazel_test.sh: bazel not found; install Debian's bazel-bootstrap and bazel-rules-java" \
       "(ci/install_system_deps.sh)" >&2
  exit 1
fi
if [ ! -f /usr/share/bazel/rules/java/WORKSPACE ]; then
  echo "ci/bazel_test.sh: rules_java not found at /usr/share/bazel/rules/java; install Debian's" \
       "bazel-rules-java (ci/install_system_deps.sh)" >&2
  exit 1
fi

# Build outputs are cached on disk outside the checkout (every CI run is a fresh clone, whose
# output base is new); test results are not taken from that cache: the tests always run.
disk_cache="${QLC_BAZEL_DISK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qlora-compat/bazel-disk}"
mkdir -p "$disk_cache"
qlc_log "bazel test //... (offline, Debian's Bazel; disk cache $disk_cache)"
bazel test //... --disk_cache="$disk_cache" --nocache_test_results --test_output=errors "$@"
