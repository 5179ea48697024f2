#!/usr/bin/env bash
# Builds probe J's carry (session 45; results/runtime/NOTES.md, session 45): stage_probe with the
# block trace and consumer 0's waits (-DMAGI_FWD_TRACE -DMAGI_FWD_TRACE_WORDS=16) against the
# kernels with trace2.patch (probe G's trace.patch, 16 words a block, clock64 around the MERGE
# kernel's wait for the stage before, each item's wait for its Q and for its first K tile, and
# each epilogue), and call_j.sh; run from the repository root after scripts/setup.sh:
#   bash results/runtime/2026-12-07_s45_j_trace_inputs/build_j.sh [BUILD_DIR] [CARRY_DIR]
# then on the device, carry ["build-gpu-carry/s45j"]:
#   OUT=$OUT bash build-gpu-carry/s45j/call_j.sh
set -euo pipefail
B=${1:-build}
C=${2:-build-gpu-carry/s45j}
D=$(dirname "$0")
ROOT=$(pwd)
S=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$S/wt" 2>/dev/null || true; rm -rf "$S"' EXIT
mkdir -p "$C"
bash results/runtime/2026-12-06_s38_stage_probe/patched_kernels.sh "$B" "$ROOT/$D/trace2.patch" "$S"
PROBE_FLAGS="-DMAGI_FWD_TRACE -DMAGI_FWD_TRACE_WORDS=16" KERNELS_LIB="$S/libmagi_kernels_cuda.a" \
  KERNELS_INCLUDE="$S/wt/kernels" bash results/runtime/2026-12-06_s38_stage_probe/build.sh "$B" "$C/stage_probe_j"
strip "$C/stage_probe_j"
cp "$D/call_j.sh" "$C/"
ls -la "$C"
