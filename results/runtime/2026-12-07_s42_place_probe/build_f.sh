#!/usr/bin/env bash
# Builds F's carry (session 42, prepared, not run): magi-bench, and stage_probe at this tree's kernels, with the
# control `again` and alternating rounds (results/runtime/2026-12-06_s38_stage_probe/), and
# call_f.sh beside it; run from the repository root after scripts/setup.sh (a CUDA build tree):
#   bash results/runtime/2026-12-07_s42_place_probe/build_f.sh [BUILD_DIR] [CARRY_DIR]
# then on the device, carry ["build-gpu-carry/s42"]:
#   BUDGET=560 OUT=$OUT bash build-gpu-carry/s42/call_f.sh     (about 130 s of probe, 250 s of magi-bench, then ncu)
set -euo pipefail
B=${1:-build}
C=${2:-build-gpu-carry/s42}
mkdir -p "$C"
cmake --build "$B" -j "$(nproc)" --target magi-bench > /dev/null
bash results/runtime/2026-12-06_s38_stage_probe/build.sh "$B" "$C/stage_probe"
strip "$C/stage_probe"
cp "$B/magi-bench" "$C/"
strip "$C/magi-bench"
cp "$(dirname "$0")/call_f.sh" "$C/"
ls -la "$C"
