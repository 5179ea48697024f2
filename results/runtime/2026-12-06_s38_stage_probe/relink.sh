#!/usr/bin/env bash
# A build target's link line with another kernels library (patched_kernels.sh):
#   bash results/runtime/2026-12-06_s38_stage_probe/relink.sh BUILD_DIR TARGET KERNELS_LIB OUT
# TARGET as ninja names it (magi-bench, tests/kernels/cuda/test_kernels_cuda).
set -euo pipefail
B=$1 TARGET=$2 KLIB=$3 OUT=$4
LINK=$(cd "$B" && ninja -t commands "$TARGET" | tail -1 | sed 's/ && cd .*//; s/^: && //')
LINK=${LINK//kernels\/cuda\/libmagi_kernels_cuda.a/$KLIB}
LINK=$(echo "$LINK" | sed -E "s# -o [^ ]+# -o $OUT#")
(cd "$B" && eval "$LINK")
