#!/usr/bin/env bash
# v45 (cp 1 stage cuts moved to fewer straddled rows; results/runtime/NOTES.md, session 45) against
# base: varlen causal 32k forward (stages_vc_fwd.json: issue 12's stage config cut to that mask and
# pass) at overlap degree auto 1 2 4 4 2 1 auto, base / v45 / base / v45; about 160 s. The carry
# (git-ignored build-gpu-carry/s45c): magi-bench-base (7603384's, = build-gpu-carry/s45/magi-bench),
# magi-bench-v45 (f506687 with v45_stage_cuts_fewer_straddles_patch.diff applied: `git apply` it,
# `cmake --build build --target magi-bench`, strip), this script and the config. On the device:
#   OUT=$OUT bash build-gpu-carry/s45c/call.sh   (carry ["build-gpu-carry/s45c"])
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"; S=build-gpu-carry/s45c
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv >> $OUT/v45.txt
i=0
for v in base v45 base v45; do
  i=$((i+1))
  echo "## $v at $(el)s" >> $OUT/v45.txt
  timeout 70 mpirun --oversubscribe --allow-run-as-root --bind-to none -np 1 $S/magi-bench-$v --config $S/stages_vc_fwd.json --backend gpu --comm nccl --out $OUT/${v}_$i.json 2>&1 | grep -E 'stages_vc_fwd/[0-9]+ ' >> $OUT/v45.txt
done
echo "done at $(el)s" >> $OUT/v45.txt
