#!/usr/bin/env bash
# D (prepared in session 41, not yet run): the staged forward's items wait per 64-row block for
# the earlier stages' stores (FlexAttention::share_forward_out; the runtime's
# Device::share_stages) instead of for the whole previous kernel. The kernel's accumulate,
# shared and edge tests first; then stage_probe in one process: one launch, the MERGE kernel
# alone, the stages as before and the same stages through plans that share out (`shared<N>`),
# alternating; the runtime device's tests; issue 12's benchmark (magi-bench on
# configs/gpu_stages_bench.json); the gpu e2e masks suite with D's magi-bench while BUDGET lasts. Carry ["build-gpu-carry/s41"], built by build_d.sh beside this file; on the device:
#   BUDGET=400 OUT=$OUT bash build-gpu-carry/s41/call_d.sh      (about 450 s in all)
set -u
B=build-gpu-carry/s41x; mkdir -p $B
tar xJf build-gpu-carry/s41/bins_d.tar.xz -C $B
R=/tmp/d; mkdir -p $R
end=$(( $(date +%s) + ${BUDGET:-300} ))
cap() { local l=$(( end - $(date +%s) )); [ $l -lt 5 ] && l=5; [ $l -lt $1 ] && echo $l || echo $1; }  # a step's timeout: its own, or what is left (timeout 0 would never stop)
nvidia-smi -L > $R/card.txt; cat $R/card.txt
(nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 200 > $R/smi.csv 2>&1 &)
timeout $(cap 150) $B/test_kernels_cuda_d --gtest_brief=1 --gtest_filter='*Accumulate*:*SharedOut*:*SharedDq*:*WriteKeyed*:PdlOrder*:*EdgeCases*:*PipelineShapes*' > $R/tests_d.log 2>&1
echo "tests D rc=$? $(date -u +%T)" | tee -a $R/d.txt; grep -E '^\[  (PASSED|FAILED)|Failure|rror' $R/tests_d.log | head -20 | tee -a $R/d.txt
echo "## D probe $(date -u +%T)" | tee -a $R/d.txt
timeout $(cap 200) $B/stage_probe_d configs/gpu_stages_bench.json --rounds 1 --seconds 1.0 --only one,mergek,stages2,shared2,stages3,shared3,stages5,shared5 2>&1 | tee -a $R/d.txt
timeout $(cap 90) $B/test_runtime_cuda_device --gtest_brief=1 > $R/tests_rt.log 2>&1
echo "runtime device tests rc=$? $(date -u +%T)" | tee -a $R/d.txt; grep -E '^\[  (PASSED|FAILED)|Failure|rror' $R/tests_rt.log | head -20 | tee -a $R/d.txt
echo "## magi-bench stages $(date -u +%T)" | tee -a $R/d.txt
timeout $(cap 150) $B/magi-bench --config configs/gpu_stages_bench.json --backend gpu --out $R/stages_bench.json > $R/stages_bench.txt 2>&1
echo "rc=$?" | tee -a $R/d.txt; tail -40 $R/stages_bench.txt | tee -a $R/d.txt
echo "## e2e_gpu_masks $(date -u +%T)" | tee -a $R/d.txt
left=$(( end - $(date +%s) ))
[ $left -gt 60 ] && { timeout $left sh tests/runtime/test_cli_e2e.sh $B/magi-bench configs/gpu_masks.json 80 --backend gpu --comm mpi > $R/e2e_masks.log 2>&1; echo "e2e rc=$?" | tee -a $R/d.txt; tail -5 $R/e2e_masks.log | tee -a $R/d.txt; }
pkill nvidia-smi
(cd $R && xz -f smi.csv; tar cf "$OUT/d.tar" .)
