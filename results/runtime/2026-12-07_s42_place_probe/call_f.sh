#!/usr/bin/env bash
# F (session 42): is the staged forward's loss the kernels' or the clock's? Three steps, each
# while BUDGET lasts:
#   1. stage_probe at this tree's kernels with the control `again` (the one launch timed again,
#      last) and rounds alternating their order, on issue 12's 32k stage benchmark;
#   2. issue 12's benchmark itself (magi-bench, configs/gpu_stages_bench.json) with its overlap
#      degrees in palindromic order (auto 1 2 4 4 2 1 auto), so that each degree and the one launch
#      stand on average at the same place in the run; ratios of the pairs' geometric means;
#   3. ncu (full set, SASS source) of one launch of the write kernel against the MERGE kernel with
#      no merged rows (`mergek`), varlen causal and causal.
# STEPS orders them (default "probe palindrome ncu"); B is the carry (default build-gpu-carry/s42).
# Carry ["build-gpu-carry/s42"] (build_f.sh beside this file):
#   BUDGET=560 OUT=$OUT bash build-gpu-carry/s42/call_f.sh
set -u
B=${B:-build-gpu-carry/s42}
R=/tmp/f; mkdir -p $R
end=$(( $(date +%s) + ${BUDGET:-300} ))
nvidia-smi -L > $R/card.txt; cat $R/card.txt
(nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 200 > $R/smi.csv 2>&1 &)
probe() {
echo "## probe $(date -u +%T)" | tee -a $R/f.txt
timeout 200 $B/stage_probe configs/gpu_stages_bench.json --rounds 4 --seconds 0.5 --only ${ONLY:-one,mergek,stages2,stages3,stages5} 2>&1 | tee -a $R/f.txt
}
palindrome() {
echo "## palindrome $(date -u +%T)" | tee -a $R/f.txt
python3 -c "import json; c = json.load(open('configs/gpu_stages_bench.json')); c['parallel']['overlap_degree'] = ['auto', 1, 2, 4, 4, 2, 1, 'auto']; json.dump(c, open('$R/palindrome.json', 'w'))"
left=$(( end - $(date +%s) ))
[ $left -gt 240 ] && { timeout $left $B/magi-bench --config $R/palindrome.json --backend gpu --out $R/palindrome_out.json > $R/palindrome.txt 2>&1; echo "rc=$?" | tee -a $R/f.txt; }
[ -f $R/palindrome_out.json ] && python3 - $R/palindrome_out.json <<'PY' | tee -a $R/f.txt
import json, math, sys
from collections import defaultdict
rows = [c for c in json.load(open(sys.argv[1]))["cases"] if not c.get("skipped")]
ms = defaultdict(list)
for c in rows:
    ms[(c["mask"], c["details"]["plan"]["overlap_degree"])].append((c["fwd_ms"], c["bwd_ms"]))
gm = lambda v: math.exp(sum(map(math.log, v)) / len(v))
print("mask            stages  fwd ms (each)            fwd ratio  bwd ratio")
for (m, d), v in ms.items():
    b = ms[(m, 0)]
    print(f"{m:15} {d + 1:6}  {' '.join(f'{x[0]:.3f}' for x in v):24} {gm([x[0] for x in b]) / gm([x[0] for x in v]):9.3f}"
          f"  {gm([x[1] for x in b]) / gm([x[1] for x in v]):9.3f}")
PY
}
ncu_step() {
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
    ncu -i $R/${m}_$name.ncu-rep --page raw --csv > $R/${m}_${name}_raw.csv 2>&1
    python3 - $R/${m}_${name}_raw.csv <<'PY2' | tee -a $R/f.txt
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if len(rows) >= 3:
    stalls = [(n.split("stalled_")[1].split("_per_issue")[0], v) for n, v in zip(rows[0], rows[2])
              if n.startswith("smsp__average_warps_issue_stalled_") and n.endswith("_per_issue_active.ratio")]
    print("  stalls per issue:", " ".join(f"{k}={v}" for k, v in stalls if v not in ("", "0")))
PY2
    grep -E '"(Duration|SM Frequency|Executed Instructions|Issue Slots Busy|No Eligible|DRAM Throughput)"' $R/${m}_${name}_details.csv | awk -F'","' '{print $(NF-2)" "$(NF-1)" "$NF}' | cut -c1-100 | tee -a $R/f.txt
    rm -f $R/${m}_$name.ncu-rep
  done
done
}
for step in ${STEPS:-probe palindrome ncu}; do
  [ $(( end - $(date +%s) )) -lt 30 ] && break
  case $step in probe) probe ;; palindrome) palindrome ;; ncu) ncu_step ;; esac
done
pkill nvidia-smi
(cd $R && xz -f *.csv; tar cf "$OUT/f.tar" .)
