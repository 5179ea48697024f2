#!/usr/bin/env bash
# v42 against base (results/kernel/NOTES.md, v42): the forward's row maxima kept before the wait
# for the P V product in flight, the exponentials left to ptxas. Carry ["build-gpu-carry/s44k"]
# (build_v41.sh with V=v42); about 260 s, everything in one log:
#   OUT=$OUT bash build-gpu-carry/s44k/call_v42.sh
# 1. v42's gpu tests; 2. stage_probe base / v42 / base / v42 on issue 12's 32k stage config (one,
# mergek, stages5; one round each); 3. ab32k_fwd3 (full, causal, varlen causal at 32k, d 128 and
# 64, forward) base / v42, while time lasts. The log is written as it goes: what a cut-off call
# leaves still comes back.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s44k
L=$OUT/v42.txt
[ -x $S/v42/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv >> $L
timeout 100 $S/v42/test_kernels_cuda --gtest_brief=1 > $OUT/v42_gpu_tests.log 2>&1
rc=$?
echo "v42 gpu tests rc=$rc $(grep -E '^\[  (PASSED|FAILED)' $OUT/v42_gpu_tests.log | tr '\n' ' ') at $(el)s" >> $L
[ $rc -eq 0 ] || exit 1
for v in base v42 base v42; do
  echo "## probe $v at $(el)s" >> $L
  timeout 60 $S/$v/stage_probe configs/gpu_stages_bench.json --rounds 1 --seconds 0.5 --only one,mergek,stages5 2>&1 | grep -v "^#" >> $L
done
for v in base v42 base v42; do
  echo "## ab32k_fwd3 $v at $(el)s" >> $L
  timeout 60 $S/$v/magi-bench kernel --config $S/ab32k_fwd3.json --no-check 2>/dev/null | grep -E "ab32k_fwd3/[0-9]+ " >> $L
done
echo "done at $(el)s" >> $L
