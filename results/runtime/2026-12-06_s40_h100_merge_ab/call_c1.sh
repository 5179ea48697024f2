#!/usr/bin/env bash
# Where the MERGE forward's 3.5-5% on causal's long items comes from. C1 (merge_c1.patch, a
# diagnostic): no fetch_earlier inside the item loop; a merging item loads the earlier out in its
# epilogue, after waiting for the previous stage there. If mergek C1 runs as `one`, the loop's
# shape in the MERGE kernel is the cost. Then ncu (full set, SASS source counters) on one launch of
# the writing and the MERGE kernel of A; first of all, both kernels' SASS. Carry ["build-gpu-carry/s40c"]
# from build_ab.sh with PATCH=merge_c1.patch:
#   BUDGET=200 OUT=$OUT bash build-gpu-carry/s40c/call_c1.sh
set -u
B=build-gpu-carry/s40; mkdir -p $B && tar xJf build-gpu-carry/s40c/bins.tar.xz -C $B && tar xJf build-gpu-carry/s40c/bins_b.tar.xz -C $B
R=/tmp/c1; mkdir -p $R
end=$(( $(date +%s) + ${BUDGET:-200} ))
nvidia-smi -L > $R/card.txt
for k in 0 1; do
  cuobjdump -sass -fun "_ZN4magi7kernels4cuda6detail15flex_fwd_kernelI13__nv_bfloat16Li128ELi128ELi2ELb${k}EEEvNS2_9FwdParamsIT_EE" $B/stage_probe > $R/fwd_merge$k.sass 2>&1
done
wc -l $R/*.sass
timeout 60 $B/test_kernels_cuda_b --gtest_brief=1 --gtest_filter='*Accumulate*:*WriteKeyed*:PdlOrder*:*EdgeCases*' > $R/tests_c1.log 2>&1
echo "tests C1 rc=$?" | tee -a $R/ab.txt; grep -E '^\[  (PASSED|FAILED)' $R/tests_c1.log | tee -a $R/ab.txt
python3 -c "import json; c = json.load(open('configs/gpu_stages_bench.json')); c['mask']['type'] = ['causal', 'varlen_causal']; json.dump(c, open('$R/two.json', 'w'))"
for v in stage_probe_b stage_probe stage_probe_b stage_probe; do
  [ $(( end - $(date +%s) )) -lt 35 ] && break
  echo "## $v $(date -u +%T)" | tee -a $R/ab.txt
  timeout 60 $B/$v $R/two.json --rounds 1 --seconds 1.0 --only one,mergek,mergeall,stages5 2>&1 | tee -a $R/ab.txt | grep -v "^#"
done
python3 -c "import json; c = json.load(open('configs/gpu_stages_bench.json')); c['mask']['type'] = ['causal']; json.dump(c, open('$R/causal.json', 'w'))"
P="$B/stage_probe $R/causal.json --rounds 1 --seconds 0.2 --only one,mergek"
# ncu as long as the budget lasts. MERGE launches before mergek's first: the check's staged calls, 1 + 2 + 4 at degrees 1, 2, 4.
left=$(( end - $(date +%s) ))
[ $left -gt 60 ] && timeout $(( left / 2 )) ncu --clock-control none --set full --import-source yes -k regex:'flex_fwd_kernel.*Lb1E' --launch-skip 7 --launch-count 1 -o $R/mergek $P > $R/ncu_mergek.log 2>&1
left=$(( end - $(date +%s) ))
[ $left -gt 30 ] && timeout $left ncu --clock-control none --set full --import-source yes -k regex:'flex_fwd_kernel.*Lb0E' --launch-skip 0 --launch-count 1 -o $R/write $P > $R/ncu_write.log 2>&1
for v in mergek write; do
  [ -f $R/$v.ncu-rep ] || continue
  ncu -i $R/$v.ncu-rep --page details --csv > $R/${v}_details.csv 2>&1
  ncu -i $R/$v.ncu-rep --page source --csv --print-source sass > $R/${v}_sass_source.csv 2>&1
  grep -E '"Duration"|"Executed Instructions"|"Issue Slots Busy"|"No Eligible"' $R/${v}_details.csv | cut -c1-160
done
rm -f $R/*.ncu-rep
(cd $R && xz -f *.csv *.sass; tar cf "$OUT/c1.tar" .)
