#!/usr/bin/env bash
# The kernels library with a patch applied, for the A/B builds beside it and elsewhere in results/
# (build_ab.sh, build_g.sh, build_v41.sh); run from the repository root with a CUDA build tree:
#   bash results/runtime/2026-12-06_s38_stage_probe/patched_kernels.sh BUILD_DIR PATCH SCRATCH
# SCRATCH/wt: a worktree of HEAD with PATCH applied (the caller removes it: git worktree remove);
# SCRATCH/libmagi_kernels_cuda.a: the build's library with flex_attention.cu compiled from it by
# the build's own compile line; relink.sh links a target against it.
set -euo pipefail
B=$1 PATCH=$2 S=$3
ROOT=$(pwd)
git worktree add -q --detach "$S/wt" HEAD
git -C "$S/wt" apply "$PATCH"
CMD=$(python3 -c "import json, sys; print(next(e['command'] for e in json.load(open(sys.argv[1])) if e['file'].endswith('kernels/cuda/flex_attention.cu')))" "$B/compile_commands.json")
CMD=${CMD//$ROOT\/kernels/$S\/wt\/kernels}
CMD=$(echo "$CMD" | sed -E "s# -o [^ ]+# -o $S/flex_attention.cu.o#")
(cd "$B" && eval "$CMD") > "$S/nvcc.log" 2>&1 || { cat "$S/nvcc.log"; exit 1; }
cp "$B/kernels/cuda/libmagi_kernels_cuda.a" "$S/libmagi_kernels_cuda.a"
ar r "$S/libmagi_kernels_cuda.a" "$S/flex_attention.cu.o"
