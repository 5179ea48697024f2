#!/usr/bin/env bash
# Session 49, v47: the forward's staged output written by two store warps of the producer
# warpgroup instead of by the consumers, against base (16cb42c). OUT=$OUT bash
# build-gpu-carry/s49/call2.sh, carry ["build-gpu-carry/s49"]. 1. v47's gpu tests, racecheck and
# synccheck on the edge cases, the masked forwards checked; 2. ab_fwd and ab_fwd_gqa base / v47 /
# base / v47; 3. while time lasts, v47 on kernel_catalogue (checked). The log is written as it goes.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s49
L=$OUT/s49_v47.txt
[ -x $S/v47/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv >> $L
timeout 100 $S/v47/test_kernels_cuda --gtest_brief=1 > $OUT/v47_gpu_tests.log 2>&1
rc=$?
echo "v47 gpu tests rc=$rc $(grep -E '^\[  (PASSED|FAILED)' $OUT/v47_gpu_tests.log | tr '\n' ' ') at $(el)s" >> $L
[ $rc -eq 0 ] || exit 1
for tool in racecheck synccheck; do
  timeout 70 compute-sanitizer --tool $tool $S/v47/test_kernels_cuda --gtest_filter=FlexAttentionGpu.EdgeCases > $OUT/san_$tool.log 2>&1
  echo "v47 $tool rc=$? $(grep -E 'SUMMARY' $OUT/san_$tool.log | tail -1) at $(el)s" >> $L
done
timeout 100 $S/v47/magi-bench kernel --config $S/check_cand.json --out $OUT/check_v47.json > $OUT/check_v47.log 2>&1
echo "v47 check rc=$? $(grep -E '#wrong' $OUT/check_v47.log | tr '\n' ' ') at $(el)s" >> $L
run() {  # binary config [check]
  echo "## $2 $1 at $(el)s" >> $L
  timeout 100 $S/$1/magi-bench kernel --config $S/$2.json --no-check 2>/dev/null | grep -E "$2/[0-9]+ " >> $L
}
for v in base v47 base v47; do run $v ab_fwd; done
for v in base v47 base v47; do run $v ab_fwd_gqa; done
if [ $(el) -lt 330 ]; then
  echo "## kernel_catalogue v47 (checked) at $(el)s" >> $L
  timeout $(( 540 - $(el) )) $S/v47/magi-bench kernel --config configs/kernel_catalogue.json --out $OUT/catalogue_v47.json 2>&1 | grep -E "kernel_catalogue/[0-9]+ |#wrong" >> $L
fi
echo "done at $(el)s" >> $L
