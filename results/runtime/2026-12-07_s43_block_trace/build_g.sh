#!/usr/bin/env bash
# Builds probe G's carry (session 43): stage_probe with the block trace (-DMAGI_FWD_TRACE) against
# the kernels with trace.patch, beside session 42's F carry (magi-bench and stage_probe at this
# tree's kernels, build_f.sh), and call_g.sh; run from the repository root after scripts/setup.sh:
#   bash results/runtime/2026-12-07_s43_block_trace/build_g.sh [BUILD_DIR] [CARRY_DIR]
# then on the device, carry ["build-gpu-carry/s43"]:
#   BUDGET=500 OUT=$OUT bash build-gpu-carry/s43/call_g.sh
set -euo pipefail
B=${1:-build}
C=${2:-build-gpu-carry/s43}
D=$(dirname "$0")
ROOT=$(pwd)
bash results/runtime/2026-12-07_s42_place_probe/build_f.sh "$B" "$C"
S=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$S/wt" 2>/dev/null || true; rm -rf "$S"' EXIT
bash results/runtime/2026-12-06_s38_stage_probe/patched_kernels.sh "$B" "$ROOT/$D/trace.patch" "$S"
KLIB="$S/libmagi_kernels_cuda.a"
PROBE_FLAGS=-DMAGI_FWD_TRACE KERNELS_LIB="$KLIB" KERNELS_INCLUDE="$S/wt/kernels" \
  bash results/runtime/2026-12-06_s38_stage_probe/build.sh "$B" "$C/stage_probe_g"
strip "$C/stage_probe_g"
cp "$D/call_g.sh" "$C/"
ls -la "$C"
