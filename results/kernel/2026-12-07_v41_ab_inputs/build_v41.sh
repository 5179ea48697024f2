#!/usr/bin/env bash
# Builds v41's carry (results/kernel/NOTES.md, v41) from a CUDA build tree of the project; run from
# the repository root after scripts/setup.sh (or a configured build/):
#   [V=... PATCH=... CALL=... EXTRA=...] bash results/kernel/2026-12-07_v41_ab_inputs/build_v41.sh \
#     [BUILD_DIR] [CARRY_DIR]
# base: magi-bench, test_kernels_cuda and stage_probe of the tree as it is; $V (default v41): the
# same with $PATCH (default v41_fwd_softmax_before_pv_wait_patch.diff) applied to the kernels
# (flex_attention.cu compiled again in a scratch worktree, its object put in place of base's in a
# copy of the kernels library, the three relinked). Prints where each tree's forward loop waits
# (sass_waits.py on both cubins). The carry (default build-gpu-carry/s43k, git-ignored) gets
# bins.tar.xz, ab32k_fwd.json, $CALL (default call_v41.sh) and the files in $EXTRA; on the
# device, carry ["build-gpu-carry/s43k"]:
#   OUT=$OUT bash build-gpu-carry/s43k/call_v41.sh
# v42 (../2026-12-07_v42_ab_inputs) is built by the same script with V, PATCH, CALL and EXTRA set
# (its manifest, ../2026-12-07_s44_h100_v42/manifest.json, has the command).
set -euo pipefail
B=${1:-build}
C=${2:-build-gpu-carry/s43k}
V=${V:-v41}
PATCH=${PATCH:-$(pwd)/$(dirname "$0")/v41_fwd_softmax_before_pv_wait_patch.diff}
CALL=${CALL:-$(dirname "$0")/call_v41.sh}
D=$(dirname "$0")
ROOT=$(pwd)
cmake --build "$B" -j "$(nproc)" --target magi-bench test_kernels_cuda > /dev/null
S=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$S/wt" 2>/dev/null || true; rm -rf "$S"' EXIT
mkdir -p "$S/base" "$S/$V"
bash results/runtime/2026-12-06_s38_stage_probe/build.sh "$B" "$S/base/stage_probe"
cp "$B/magi-bench" "$B/tests/kernels/cuda/test_kernels_cuda" "$S/base/"
bash results/runtime/2026-12-06_s38_stage_probe/patched_kernels.sh "$B" "$PATCH" "$S"
KLIB="$S/libmagi_kernels_cuda.a"
# flex_attention.cu's compile line from the build tree, to a cubin for both trees, for sass_waits.py.
CMD=$(python3 -c "import json, sys; print(next(e['command'] for e in json.load(open(sys.argv[1])) if e['file'].endswith('kernels/cuda/flex_attention.cu')))" "$B/compile_commands.json")
for tree in base $V; do
  src=$ROOT/kernels; [ $tree = $V ] && src=$S/wt/kernels
  CUBIN=${CMD//$ROOT\/kernels/$src}
  CUBIN=$(echo "$CUBIN" | sed -E "s# -c # -cubin #; s#code=\[compute_90a,sm_90a\]#code=[sm_90a]#; s# -o [^ ]+# -o $S/$tree.cubin#")
  (cd "$B" && eval "$CUBIN") > /dev/null 2>&1
  python3 "$D/sass_waits.py" "$S/$tree.cubin" bfloat16
done
KERNELS_LIB="$KLIB" KERNELS_INCLUDE="$S/wt/kernels" \
  bash results/runtime/2026-12-06_s38_stage_probe/build.sh "$B" "$S/$V/stage_probe"
for target in magi-bench tests/kernels/cuda/test_kernels_cuda; do
  bash results/runtime/2026-12-06_s38_stage_probe/relink.sh "$B" "$target" "$KLIB" "$S/$V/$(basename "$target")"
done
strip "$S"/base/* "$S"/$V/*
mkdir -p "$C"
tar cJf "$C/bins.tar.xz" -C "$S" base $V
cp "$D/ab32k_fwd.json" "$CALL" ${EXTRA:-} "$C/"
ls -la "$C"
