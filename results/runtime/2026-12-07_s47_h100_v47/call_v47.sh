#!/usr/bin/env bash
# Session 47's A/B: base (7603384), v46 (v45d cuts + fresh stages in Into::write_keyed, plain launch),
# v47 (v45d cuts + an accumulating call none of whose items merges runs the writing epilogue after
# the previous kernel, still overlapped: FwdEpilogue::write_after). Forward, palindromic degrees.
#   OUT=$OUT bash build-gpu-carry/s47/call_v47.sh   (carry ["build-gpu-carry/s47"])
set -u
OUT=${OUT:-out}; mkdir -p "$OUT" /tmp/r; S=build-gpu-carry/s47; S7=$S
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
M="mpirun --oversubscribe --allow-run-as-root --bind-to none -np 1"
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv >> $OUT/v47.txt
(nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 200 > /tmp/r/smi.csv) & SMI=$!
i=0
ab() {  # config, variants...
  local cfg=$1; shift
  for v in "$@"; do
    i=$((i+1)); echo "## $cfg $v at $(el)s" >> $OUT/v47.txt
    timeout 100 $M $S/magi-bench-$v --config $S/$cfg.json --backend gpu --comm nccl --out /tmp/r/${cfg}_${v}_$i.json 2>&1 | grep -E "$cfg/[0-9]+ " >> $OUT/v47.txt
  done
}
ab stages_vc_fwd base v46 v47
ab stages_vc128k_fwd v47 v46 base
echo "## kernel tests at $(el)s" >> $OUT/v47.txt
timeout 150 $S7/test_kernels_cuda --gtest_filter='FlexAttentionGpu.*' > /tmp/r/tests.log 2>&1; echo "rc=$?" >> $OUT/v47.txt
grep -E '^\[  (PASSED|FAILED) |^\[  FAILED|tests ran|Seed|seed=' /tmp/r/tests.log | head -20 >> $OUT/v47.txt
ab stages_vc_fwd v47 v46 base
echo "## v47 --check at $(el)s" >> $OUT/v47.txt
timeout 100 $M $S/magi-bench-v47 --config $S/stages_vc_fwd.json --backend gpu --comm nccl --check > /tmp/r/v47_check.log 2>&1; echo "rc=$?" >> $OUT/v47.txt
grep -E 'checked|wrong' /tmp/r/v47_check.log >> $OUT/v47.txt
kill $SMI; echo "done at $(el)s" >> $OUT/v47.txt
tar cJf $OUT/r.tar.xz -C /tmp/r .
