#!/usr/bin/env bash
# A/B of the MERGE forward (B: one wait for the previous stage per thread, staged pairs read as 32 bits):
# B's accumulate tests, then stage_probe A and B on the 32k stage benchmark (1 round, 1 s windows).
set -u
B=build-gpu-carry/s39; mkdir -p $B && tar xJf build-gpu-carry/s39c/bins.tar.xz -C $B && tar xJf build-gpu-carry/s39c/bins_b.tar.xz -C $B
R=/tmp/ab; mkdir -p $R
end=$(( $(date +%s) + ${BUDGET:-240} ))
timeout 60 $B/test_kernels_cuda_b --gtest_brief=1 --gtest_filter='*Accumulate*:*WriteKeyed*:PdlOrder*:*EdgeCases*:*PipelineShapes*' > $R/tests_b.log 2>&1
echo "tests B rc=$?"; grep -E '^\[  (PASSED|FAILED)' $R/tests_b.log
for v in stage_probe_b stage_probe stage_probe_b; do
  left=$(( end - $(date +%s) )); [ $left -lt 30 ] && break
  echo "## $v $(date -u +%T)" | tee -a $R/ab.txt
  timeout $left $B/$v configs/gpu_stages_bench.json --rounds 1 --seconds 1.0 2>&1 | tee -a $R/ab.txt | grep -v "^#"
done
(cd $R && tar cJf "$OUT/ab.tar.xz" .)
