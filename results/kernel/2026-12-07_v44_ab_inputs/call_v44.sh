#!/usr/bin/env bash
# v44 against base (results/kernel/NOTES.md, v44): the forward's Q in three buffers instead of two,
# so that an item's Q loads while the item two before is still staging its output. Carry
# ["build-gpu-carry/s45k"] (build_v41.sh with V=v44); about 350 s, everything in one log:
#   OUT=$OUT bash build-gpu-carry/s45k/call_v44.sh
# 1. v44's gpu tests, racecheck and synccheck on the edge cases; 2. stage_probe base / v44 / base /
# v44 on issue 12's 32k stage config (one, mergek, stages5; one round each); 3. ab32k_fwd (the 32k
# forward of every catalogue mask at d 128 and 64) base / v44, then ab32k_fwd3 base / v44, while
# time lasts. The log is written as it goes: what a cut-off call leaves still comes back.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s45k
L=$OUT/v44.txt
[ -x $S/v44/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv >> $L
timeout 100 $S/v44/test_kernels_cuda --gtest_brief=1 > $OUT/v44_gpu_tests.log 2>&1
rc=$?
echo "v44 gpu tests rc=$rc $(grep -E '^\[  (PASSED|FAILED)' $OUT/v44_gpu_tests.log | tr '\n' ' ') at $(el)s" >> $L
[ $rc -eq 0 ] || exit 1
for tool in racecheck synccheck; do
  timeout 60 compute-sanitizer --tool $tool $S/v44/test_kernels_cuda --gtest_filter=FlexAttentionGpu.EdgeCases > $OUT/san_$tool.log 2>&1
  echo "v44 $tool rc=$? $(grep -E 'SUMMARY' $OUT/san_$tool.log | tail -1) at $(el)s" >> $L
done
for v in base v44 base v44; do
  echo "## probe $v at $(el)s" >> $L
  timeout 60 $S/$v/stage_probe configs/gpu_stages_bench.json --rounds 1 --seconds 0.5 --only one,mergek,stages5 2>&1 | grep -v "^#" >> $L
done
for cfg in ab32k_fwd ab32k_fwd3; do
  for v in base v44; do
    echo "## $cfg $v at $(el)s" >> $L
    timeout 90 $S/$v/magi-bench kernel --config $S/$cfg.json --no-check 2>/dev/null | grep -E "$cfg/[0-9]+ " >> $L
  done
done
echo "done at $(el)s" >> $L
