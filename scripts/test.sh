#!/usr/bin/env bash
# Install what is missing, build, and run the whole CPU test suite (labels cpu and mpi; gpu
# tests skip themselves where no GPU is visible).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" "${MAGI_PRESET:-release}"

cd "$(magi_build_dir)"
ctest --output-on-failure -j "$(nproc)" --timeout 600 "$@"
