#!/usr/bin/env bash
# The merge A/B of session 39 (B = ../2026-12-06_s39_h100_stage_probe/merge_b.patch: the MERGE forward
# waits for the previous stage once per thread and reads the staged pairs as 32 bits), run from the
# carry ../2026-12-06_s39_h100_stage_probe/build_ab.sh makes (with this file copied into it):
#   BUDGET=300 OUT=$OUT bash build-gpu-carry/s39c/call_ab.sh   (carry ["build-gpu-carry/s39c"])
# B's accumulate, write-keyed, PDL-order, edge and pipeline-shape gpu tests, then stage_probe B, A, B,
# A on the 32k stage benchmark (one round each, 1 s windows, the variants that split the loss),
# nvidia-smi sampled every 200 ms throughout.
set -u
B=build-gpu-carry/s39; mkdir -p $B && tar xJf build-gpu-carry/s39c/bins.tar.xz -C $B && tar xJf build-gpu-carry/s39c/bins_b.tar.xz -C $B
R=/tmp/ab; mkdir -p $R
end=$(( $(date +%s) + ${BUDGET:-300} ))
nvidia-smi -L > $R/card.txt; nvidia-smi -q -d CLOCK,POWER | grep -E 'Driver|Graphics|SM|Power Limit' >> $R/card.txt
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,utilization.gpu --format=csv -lms 200 > $R/smi.csv &
SMI=$!
timeout 60 $B/test_kernels_cuda_b --gtest_brief=1 --gtest_filter='*Accumulate*:*WriteKeyed*:PdlOrder*:*EdgeCases*:*PipelineShapes*' > $R/tests_b.log 2>&1
echo "tests B rc=$?" | tee -a $R/ab.txt; grep -E '^\[  (PASSED|FAILED)' $R/tests_b.log | tee -a $R/ab.txt
ONLY=one,mergek,mergeall,stages2,stages3,stages5,keyed5
for v in stage_probe_b stage_probe stage_probe_b stage_probe; do
  left=$(( end - $(date +%s) )); [ $left -lt 40 ] && break
  echo "## $v $(date -u +%T)" | tee -a $R/ab.txt
  timeout $left $B/$v configs/gpu_stages_bench.json --rounds 1 --seconds 1.0 --only $ONLY 2>&1 | tee -a $R/ab.txt | grep -v "^#"
done
kill $SMI
xz -f $R/smi.csv
(cd $R && tar cJf "$OUT/ab.tar.xz" .)
