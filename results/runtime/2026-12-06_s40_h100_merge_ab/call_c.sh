#!/usr/bin/env bash
# Where the MERGE forward's cost comes from (prepared in session 40, not yet run). Two diagnostics
# against A (the tree's kernels), timed by stage_probe on causal and varlen causal 32k:
#   C1 (merge_c1.patch): no fetch_earlier inside the item loop; a merging item loads the earlier
#      out in its epilogue, after waiting for the previous stage there. If mergek C1 runs as
#      `one`, the loop's shape in the MERGE kernel is what costs 3.5-5% on causal's long items.
#   C2 (merge_c2.patch, timing only: its staged out may be wrong): the MERGE kernel never waits
#      for the previous stage (block 0 waits at its end, so the stream's order holds). stages5 C2
#      bounds what finer-grained waits (per row block instead of per grid) could give back.
# First both kernels' SASS (cuobjdump), then C1's gpu tests, the probes C1, A, C2 twice over, and
# ncu (full set, SASS source counters) on one launch of A's writing and MERGE kernels while the
# budget lasts. Carry ["build-gpu-carry/s40c"]: bins.tar.xz and bins_b.tar.xz from
#   PATCH=$PWD/results/runtime/2026-12-06_s40_h100_merge_ab/merge_c1.patch \
#     bash results/runtime/2026-12-06_s39_h100_stage_probe/build_ab.sh build build-gpu-carry/s40c
# and bins_c2.tar.xz (stage_probe_c2: the same with PATCH=merge_c2.patch into another folder, its
# stage_probe_b renamed), with this file copied in:
#   BUDGET=240 OUT=$OUT bash build-gpu-carry/s40c/call_c.sh
set -u
B=build-gpu-carry/s40; mkdir -p $B && tar xJf build-gpu-carry/s40c/bins.tar.xz -C $B && tar xJf build-gpu-carry/s40c/bins_b.tar.xz -C $B && tar xJf build-gpu-carry/s40c/bins_c2.tar.xz -C $B
R=/tmp/c; mkdir -p $R
end=$(( $(date +%s) + ${BUDGET:-240} ))
nvidia-smi -L > $R/card.txt
for k in 0 1; do
  cuobjdump -sass -fun "_ZN4magi7kernels4cuda6detail15flex_fwd_kernelI13__nv_bfloat16Li128ELi128ELi2ELb${k}EEEvNS2_9FwdParamsIT_EE" $B/stage_probe > $R/fwd_merge$k.sass 2>&1
done
wc -l $R/*.sass
timeout 60 $B/test_kernels_cuda_b --gtest_brief=1 --gtest_filter='*Accumulate*:*WriteKeyed*:PdlOrder*:*EdgeCases*' > $R/tests_c1.log 2>&1
echo "tests C1 rc=$?" | tee -a $R/ab.txt; grep -E '^\[  (PASSED|FAILED)' $R/tests_c1.log | tee -a $R/ab.txt
python3 -c "import json; c = json.load(open('configs/gpu_stages_bench.json')); c['mask']['type'] = ['causal', 'varlen_causal']; json.dump(c, open('$R/two.json', 'w'))"
for v in stage_probe_b stage_probe stage_probe_c2 stage_probe_b stage_probe stage_probe_c2; do
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
(cd $R && xz -f *.csv *.sass; tar cf "$OUT/c.tar" .)
