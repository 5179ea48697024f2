#!/usr/bin/env bash
# The main job: install what is missing, build, and run the shipped default workload
# (configs/quickstart.json) on CPU ranks under mpirun.
#   scripts/run.sh [workload.json] [extra magi-bench options]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" "${MAGI_PRESET:-release}"

config="${1:-$MAGI_ROOT/configs/quickstart.json}"
shift || true
# As many ranks as the largest parallel.cp of the workload asks for.
ranks="$("$(magi_build_dir)/magi-bench" --config "$config" --ranks-needed)"
mkdir -p "$MAGI_ROOT/out"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
magi_mpirun -np "$ranks" "$(magi_build_dir)/magi-bench" --config "$config" --backend cpu \
  --out "$MAGI_ROOT/out/run-$stamp.json" --csv "$MAGI_ROOT/out/run-$stamp.csv" "$@"
