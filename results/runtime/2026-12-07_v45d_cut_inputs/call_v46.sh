#!/usr/bin/env bash
# Session 46's A/B for the next session: base (7603384: equal cuts, later stages in the MERGE kernel),
# v45d (cuts at document ends; results/runtime/2026-12-07_v45d_cut_inputs/), v46 (v45d + a later
# stage none of whose rows an earlier stage reaches runs the writing kernel, Into::write_keyed:
# v46_fresh_stages_write_patch.diff), forward only, palindromic degrees auto 1 2 4 4 2 1 auto:
# 32k varlen causal two rounds, then 128k one round, then 32k --check for v46. About 450 s.
#   OUT=$OUT bash build-gpu-carry/s46/call_v46.sh   (carry ["build-gpu-carry/s46"])
set -u
OUT=${OUT:-out}; mkdir -p "$OUT" /tmp/r; S=build-gpu-carry/s46
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
M="mpirun --oversubscribe --allow-run-as-root --bind-to none -np 1"
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv >> $OUT/v46.txt
(nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 200 > /tmp/r/smi.csv) & SMI=$!
i=0
for cfg in stages_vc_fwd stages_vc_fwd stages_vc128k_fwd; do
  for v in base v45d v46; do
    i=$((i+1)); echo "## $cfg $v at $(el)s" >> $OUT/v46.txt
    timeout 90 $M $S/magi-bench-$v --config $S/$cfg.json --backend gpu --comm nccl --out /tmp/r/${cfg}_${v}_$i.json 2>&1 | grep -E "$cfg/[0-9]+ " >> $OUT/v46.txt
  done
done
echo "## v46 --check at $(el)s" >> $OUT/v46.txt
timeout 120 $M $S/magi-bench-v46 --config $S/stages_vc_fwd.json --backend gpu --comm nccl --check > /tmp/r/v46_check.log 2>&1; echo "rc=$?" >> $OUT/v46.txt
grep -E 'checked|wrong' /tmp/r/v46_check.log >> $OUT/v46.txt
kill $SMI; echo "done at $(el)s" >> $OUT/v46.txt
tar cJf $OUT/r.tar.xz -C /tmp/r .
