#!/usr/bin/env bash
# F (session 42): is the staged forward's loss the kernels' or the clock's? stage_probe at main's
# kernels with the control `again` (the one launch timed again, last) and rounds alternating their
# order, on issue 12's 32k stage benchmark; then ncu (full set, SASS source) of one launch of the
# write kernel against the MERGE kernel with no merged rows (`mergek`), varlen causal and causal,
# while BUDGET lasts. Carry ["build-gpu-carry/s42"]:  BUDGET=420 OUT=$OUT bash build-gpu-carry/s42/call_f.sh
set -u
B=build-gpu-carry/s42
R=/tmp/f; mkdir -p $R
end=$(( $(date +%s) + ${BUDGET:-300} ))
nvidia-smi -L > $R/card.txt; cat $R/card.txt
(nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 200 > $R/smi.csv 2>&1 &)
echo "## probe $(date -u +%T)" | tee -a $R/f.txt
timeout 240 $B/stage_probe configs/gpu_stages_bench.json --rounds 4 --seconds 0.5 --only ${ONLY:-one,mergek,stages2,stages3,stages5} 2>&1 | tee -a $R/f.txt
pkill nvidia-smi
for m in varlen_causal causal; do
  python3 -c "import json; c = json.load(open('configs/gpu_stages_bench.json')); c['mask']['type'] = ['$m']; c['parallel']['overlap_degree'] = [1]; json.dump(c, open('$R/$m.json', 'w'))"
  P="$B/stage_probe $R/$m.json --rounds 1 --seconds 0.05 --only one,mergek"
  for v in write:Lb0E:0 mergek:Lb1E:1; do
    IFS=: read name rx skip <<< "$v"
    left=$(( end - $(date +%s) )); [ $left -lt 30 ] && break
    timeout $left ncu --clock-control none --kernel-name-base mangled --set full --import-source yes -k regex:"flex_fwd_kernel.*$rx" --launch-skip $skip --launch-count 1 -o $R/${m}_$name $P > $R/ncu_${m}_$name.log 2>&1
    echo "ncu $m $name rc=$?" | tee -a $R/f.txt; grep -E "==PROF==|==ERROR==|==WARNING== No" $R/ncu_${m}_$name.log | tail -2
    [ -f $R/${m}_$name.ncu-rep ] || continue
    ncu -i $R/${m}_$name.ncu-rep --page details --csv > $R/${m}_${name}_details.csv 2>&1
    ncu -i $R/${m}_$name.ncu-rep --page source --csv --print-source sass > $R/${m}_${name}_sass.csv 2>&1
    grep -E '"(Duration|SM Frequency|Executed Instructions|Issue Slots Busy|No Eligible|DRAM Throughput)"' $R/${m}_${name}_details.csv | awk -F'","' '{print $(NF-2)" "$(NF-1)" "$NF}' | cut -c1-100 | tee -a $R/f.txt
    rm -f $R/${m}_$name.ncu-rep
  done
done
(cd $R && xz -f *.csv; tar cf "$OUT/f.tar" .)
