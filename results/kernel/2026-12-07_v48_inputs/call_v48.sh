#!/usr/bin/env bash
# v48 against base (results/kernel/NOTES.md, v48; prepared in session 49, not run): the d 128
# forward's epilogue inside a run of items leaves its store to the consumer's next issue of
# products. Its carry (git-ignored, default build-gpu-carry/s50): base/magi-bench, v48/magi-bench
# and v48/test_kernels_cuda in bins.tar.xz with the three configs of ../2026-12-07_s49_h100_probes/,
# made by build_v48.sh here. Then, carry ["build-gpu-carry/s50"], about 340 s:
#   S=build-gpu-carry/s50 OUT=$OUT bash results/kernel/2026-12-07_v48_inputs/call_v48.sh
# 1. v48's gpu tests, racecheck and synccheck on the edge cases, the masked forwards checked;
# 2. ab_fwd and ab_fwd_gqa base / v48 / base / v48; 3. while time lasts, v48 on kernel_catalogue
# (checked). The log is written as it goes.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=${S:-build-gpu-carry/s50}
L=$OUT/v48.txt
[ -x $S/v48/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv >> $L
timeout 100 $S/v48/test_kernels_cuda --gtest_brief=1 > $OUT/v48_gpu_tests.log 2>&1
rc=$?
echo "v48 gpu tests rc=$rc $(grep -E '^\[  (PASSED|FAILED)' $OUT/v48_gpu_tests.log | tr '\n' ' ') at $(el)s" >> $L
[ $rc -eq 0 ] || exit 1
for tool in racecheck synccheck; do
  timeout 70 compute-sanitizer --tool $tool $S/v48/test_kernels_cuda --gtest_filter=FlexAttentionGpu.EdgeCases > $OUT/san_$tool.log 2>&1
  echo "v48 $tool rc=$? $(grep -E 'SUMMARY' $OUT/san_$tool.log | tail -1) at $(el)s" >> $L
done
timeout 100 $S/v48/magi-bench kernel --config $S/check_cand.json --out $OUT/check_v48.json > $OUT/check_v48.log 2>&1
echo "v48 check rc=$? $(grep -E '#wrong' $OUT/check_v48.log | tr '\n' ' ') at $(el)s" >> $L
run() {  # binary config [check]
  echo "## $2 $1 at $(el)s" >> $L
  timeout 100 $S/$1/magi-bench kernel --config $S/$2.json --no-check 2>/dev/null | grep -E "$2/[0-9]+ " >> $L
}
for v in base v48 base v48; do run $v ab_fwd; done
for v in base v48 base v48; do run $v ab_fwd_gqa; done
if [ $(el) -lt 330 ]; then
  echo "## kernel_catalogue v48 (checked) at $(el)s" >> $L
  timeout $(( 540 - $(el) )) $S/v48/magi-bench kernel --config configs/kernel_catalogue.json --out $OUT/catalogue_v48.json 2>&1 | grep -E "kernel_catalogue/[0-9]+ |#wrong" >> $L
fi
echo "done at $(el)s" >> $L
