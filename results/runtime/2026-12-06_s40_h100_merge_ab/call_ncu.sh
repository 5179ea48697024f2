#!/usr/bin/env bash
# Why the MERGE forward with nothing to merge (stage_probe's mergek) runs 3.5-5% slower than the
# writing kernel on the same causal 32k items: ncu (full set, SASS-level source counters) on one
# launch of each, and the SASS of both (cuobjdump). From the carry build_ab.sh makes (A binaries):
#   OUT=$OUT bash build-gpu-carry/s39c/call_ncu.sh   (carry ["build-gpu-carry/s39c"])
set -u
B=build-gpu-carry/s39; mkdir -p $B && tar xJf build-gpu-carry/s39c/bins.tar.xz -C $B
R=/tmp/ncu; mkdir -p $R
python3 -c "import json; c = json.load(open('configs/gpu_stages_bench.json')); c['mask']['type'] = ['causal']; json.dump(c, open('$R/causal.json', 'w'))"
P="$B/stage_probe $R/causal.json --rounds 1 --seconds 0.2 --only one,mergek"
# MERGE launches before mergek's first: the check's staged calls, 1 + 2 + 4 at degrees 1, 2, 4.
timeout 150 ncu --clock-control none --set full --import-source yes -k regex:'flex_fwd_kernel.*Lb1E' --launch-skip 7 --launch-count 1 -o $R/mergek $P > $R/ncu_mergek.log 2>&1
echo "ncu mergek rc=$?"
timeout 150 ncu --clock-control none --set full --import-source yes -k regex:'flex_fwd_kernel.*Lb0E' --launch-skip 0 --launch-count 1 -o $R/write $P > $R/ncu_write.log 2>&1
echo "ncu write rc=$?"
for v in mergek write; do
  ncu -i $R/$v.ncu-rep --page details --csv > $R/${v}_details.csv 2>&1
  ncu -i $R/$v.ncu-rep --page source --csv --print-source sass > $R/${v}_sass_source.csv 2>&1
  grep -E '"Duration"|"Executed Instructions"|"Registers Per Thread"|"Issue Slots Busy"|"No Eligible"' $R/${v}_details.csv | cut -c1-200
done
cuobjdump -sass -fun '_ZN4magi7kernels4cuda6detail15flex_fwd_kernelI13__nv_bfloat16Li128ELi128ELi2ELb0EEEvNS2_9FwdParamsIT_EE' $B/stage_probe > $R/write.sass 2>&1
cuobjdump -sass -fun '_ZN4magi7kernels4cuda6detail15flex_fwd_kernelI13__nv_bfloat16Li128ELi128ELi2ELb1EEEvNS2_9FwdParamsIT_EE' $B/stage_probe > $R/merge.sass 2>&1
wc -l $R/*.sass
rm -f $R/*.ncu-rep
(cd $R && xz -f *.csv *.sass && tar cf "$OUT/ncu.tar" .)
