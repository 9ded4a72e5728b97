#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those missing (idempotent, no recommends:
# they would pull in GTK/Qt). Needs root; prints what it installs.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

packages=(
  build-essential cmake ninja-build ccache git pkg-config
  python3 python3-venv python3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libfmt-dev
  libpugixml-dev                    # reports/: junit.xml through a real XML library
  chromium                          # reports/: report.html checked in a real browser (headless)
  libtorch-dev                      # LibTorch 1.13 (CPU): the second LibTorch the tests run against
  bazel-bootstrap bazel-rules-java  # the alternate build (offline, see WORKSPACE)
  slurm-wlm munge                   # ci/slurm/ tested on a single-node Slurm on loopback
  clang libclang-rt-14-dev          # fuzz/: libFuzzer targets and the ASan + UBSan core tests
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  qlc_log "system packages: all present"
  exit 0
fi
qlc_log "installing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "ci/install_system_deps.sh: need root to install ${missing[*]} (run with sudo)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
