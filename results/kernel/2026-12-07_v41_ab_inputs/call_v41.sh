#!/usr/bin/env bash
# v41 against base (results/kernel/NOTES.md, v41): the forward's softmax kept before the wait for
# the P V product in flight. Carry ["build-gpu-carry/s43k"] (build_v41.sh); about 520 s:
#   OUT=$OUT bash build-gpu-carry/s43k/call_v41.sh
# 1. v41's gpu tests (the kernel against the float64 reference, pipeline edge cases);
# 2. stage_probe base / v41 / base / v41 on issue 12's 32k stage config (one, mergek, stages5);
# 3. ab32k_fwd (every catalogue mask at 32k, d 128 and 64, forward) base / v41 alternating, two
#    rounds while time lasts;
# 4. racecheck and synccheck of v41 on FlexAttentionGpu.EdgeCases.
# Every command under timeout; the files go back as one tar.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s43k
R=/tmp/v41; mkdir -p $R
[ -x $S/v41/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv > $R/card.txt; cat $R/card.txt
(nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 200 > $R/smi.csv 2>&1 &)
timeout 150 $S/v41/test_kernels_cuda --gtest_brief=1 > $R/v41_gpu_tests.log 2>&1
rc=$?
echo "v41 gpu tests rc=$rc $(grep -E '^\[  (PASSED|FAILED)' $R/v41_gpu_tests.log | tr '\n' ' ') at $(el)s" | tee -a $R/v41.txt
if [ $rc -eq 0 ]; then
  for v in base v41 base v41; do
    echo "## probe $v at $(el)s" | tee -a $R/v41.txt
    timeout 90 $S/$v/stage_probe configs/gpu_stages_bench.json --rounds 2 --seconds 0.5 --only one,mergek,stages5 2>&1 | grep -v "^#" | tee -a $R/v41.txt
  done
  for r in 1 2; do
    for v in base v41; do
      [ $(el) -gt 470 ] && break 2
      echo "## ab32k_fwd round $r $v at $(el)s" | tee -a $R/v41.txt
      timeout 100 $S/$v/magi-bench kernel --config $S/ab32k_fwd.json --no-check --out $R/ab_${v}_$r.json 2>/dev/null | grep -E "ab32k_fwd/[0-9]+ " | tee -a $R/v41.txt
    done
  done
  for tool in racecheck synccheck; do
    [ $(el) -gt 540 ] && break
    timeout 30 compute-sanitizer --tool $tool $S/v41/test_kernels_cuda --gtest_filter=FlexAttentionGpu.EdgeCases > $R/san_$tool.log 2>&1
    echo "v41 $tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $R/san_$tool.log | tail -1) at $(el)s" | tee -a $R/v41.txt
  done
fi
pkill nvidia-smi
(cd $R && xz -f smi.csv *.json 2>/dev/null; tar cf "$OUT/v41.tar" .)
