#!/usr/bin/env bash
# The main job: install what is missing, build what this machine can run, and run a workload
# (by default the shipped configs/quickstart.json) under mpirun: on the GPUs when the machine has
# them (the CUDA build; `--backend auto` puts one rank on each GPU, or lets ranks share them when
# the workload needs more ranks than there are GPUs), on CPU ranks otherwise.
#   scripts/run.sh [workload.json] [extra magi-bench options]
# Results land in out/run-<time>.json and .csv unless the options name their own (--out, --csv).
# Build: the `cpu` preset when no GPU is visible (nothing here would run the CUDA kernels, whose
# build takes most of a first build), the CUDA `release` preset when one is; MAGI_PRESET=...
# chooses. scripts/test.sh still builds the CUDA code wherever nvcc is found.
set -euo pipefail
if [ -z "${MAGI_PRESET:-}" ]; then
  if nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then MAGI_PRESET=release; else MAGI_PRESET=cpu; fi
fi
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" "$MAGI_PRESET"

config="$MAGI_ROOT/configs/quickstart.json"
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
  config="$1"
  shift
fi
# Our own result files only when the user names none (magi-bench refuses a second --out).
outputs=()
user_outputs=false
for arg in "$@"; do
  case "$arg" in
    -o | -o?* | --out | --out=* | --csv | --csv=*) user_outputs=true ;;
  esac
done
if [ "$user_outputs" = false ]; then
  mkdir -p "$MAGI_ROOT/out"
  stamp="$(date -u +%Y%m%dT%H%M%SZ)"
  outputs=(--out "$MAGI_ROOT/out/run-$stamp.json" --csv "$MAGI_ROOT/out/run-$stamp.csv")
fi
# As many ranks as the largest parallel.cp of the workload asks for.
ranks="$("$(magi_build_dir)/magi-bench" --config "$config" --ranks-needed)"
magi_mpirun -np "$ranks" "$(magi_build_dir)/magi-bench" --config "$config" "${outputs[@]}" "$@"
