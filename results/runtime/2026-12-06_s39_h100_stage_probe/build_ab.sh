#!/usr/bin/env bash
# Builds a kernel A/B's carry from a CUDA build tree of the project; run
# from the repository root after scripts/setup.sh (or a configured build/):
#   bash results/runtime/2026-12-06_s39_h100_stage_probe/build_ab.sh [BUILD_DIR] [CARRY_DIR]
# A: stage_probe and test_kernels_cuda of the tree as it is; B: the same with merge_b.patch
# (or $PATCH) applied to the kernels (flex_attention.cu compiled again in a scratch worktree, its object put
# in place of A's in a copy of the kernels library). The carry (default build-gpu-carry/s39c, git
# ignored) gets bins.tar.xz (A) and bins_b.tar.xz (B); copy the call that runs them into it
# (../2026-12-06_s40_h100_merge_ab/call_ab.sh for merge_b.patch, call_c.sh there for C1 and C2).
set -euo pipefail
B=${1:-build}
C=${2:-build-gpu-carry/s39c}
D=$(dirname "$0")
ROOT=$(pwd)
cmake --build "$B" -j "$(nproc)" --target magi-bench test_kernels_cuda > /dev/null
bash results/runtime/2026-12-06_s38_stage_probe/build.sh "$B" "$B/stage_probe"

S=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$S/wt" 2>/dev/null || true; rm -rf "$S"' EXIT
bash results/runtime/2026-12-06_s38_stage_probe/patched_kernels.sh "$B" "${PATCH:-$ROOT/$D/merge_b.patch}" "$S"
KLIB="$S/libmagi_kernels_cuda.a"
# B's binaries: A's link lines with the patched library.
KERNELS_LIB="$KLIB" KERNELS_INCLUDE="$S/wt/kernels" \
  bash results/runtime/2026-12-06_s38_stage_probe/build.sh "$B" "$S/stage_probe_b"
bash results/runtime/2026-12-06_s38_stage_probe/relink.sh "$B" tests/kernels/cuda/test_kernels_cuda "$KLIB" "$S/test_kernels_cuda_b"

mkdir -p "$C" "$S/a"
cp "$B/magi-bench" "$B/tests/kernels/cuda/test_kernels_cuda" "$B/stage_probe" "$S/a/"
strip "$S"/a/* "$S/stage_probe_b" "$S/test_kernels_cuda_b"
tar cJf "$C/bins.tar.xz" -C "$S/a" .
tar cJf "$C/bins_b.tar.xz" -C "$S" stage_probe_b test_kernels_cuda_b
ls -la "$C"
