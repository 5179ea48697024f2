#!/usr/bin/env bash
# Builds D's carry (row_waits.patch: the staged forward's items wait per 64-row block for the
# earlier stages' stores, FlexAttention::share_forward_out / Device::share_stages) from a clean
# checkout of the commit the patch was made on (e38fe66) or a later one it applies to, after
# scripts/setup.sh (or a configured build/); run from the repository root:
#   bash results/runtime/2026-12-07_s41_row_waits/build_d.sh [BUILD_DIR] [CARRY_DIR]
# The patch is applied to the working tree, the build dir built (magi-bench, the kernel and
# runtime gpu tests, stage_probe with its `shared<N>` variants), the binaries put in the carry
# (default build-gpu-carry/s41, git-ignored) with call_d.sh, and the patch taken back out.
set -euo pipefail
B=${1:-build}
C=${2:-build-gpu-carry/s41}
D=$(dirname "$0")
git apply --check "$D/row_waits.patch"
git apply "$D/row_waits.patch"
trap 'git apply -R "$D/row_waits.patch"' EXIT
cmake --build "$B" -j "$(nproc)" --target magi-bench test_kernels_cuda test_runtime_cuda_device > /dev/null
bash results/runtime/2026-12-06_s38_stage_probe/build.sh "$B" "$B/stage_probe"
S=$(mktemp -d)
cp "$B/stage_probe" "$S/stage_probe_d"
cp "$B/tests/kernels/cuda/test_kernels_cuda" "$S/test_kernels_cuda_d"
cp "$B/magi-bench" "$S/magi-bench"
find "$B/tests/runtime" -name test_runtime_cuda_device -type f -exec cp {} "$S/" \;
strip "$S"/*
mkdir -p "$C"
tar cJf "$C/bins_d.tar.xz" -C "$S" .
cp "$D/call_d.sh" "$C/"
rm -rf "$S"
ls -la "$C"
