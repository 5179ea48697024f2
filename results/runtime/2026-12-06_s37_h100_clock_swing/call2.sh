#!/usr/bin/env bash
# Why does `kernel` read below `run` on causal / varlen causal (not on full)? Same binary (6fa581d).
# A: kernel, all 6 cases in one process; B: kernel, one process per case; C: run, all 6 in one;
# D: kernel all 6 again. nvidia-smi samples clock / power / temperature every 100 ms throughout.
set -u
S=build-gpu-carry/s37
[ -x $S/bin/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
B=$S/bin/magi-bench
R=/tmp/r2; mkdir -p $R/cfg
python3 - <<'PY'
import json
c = json.load(open('configs/gpu_runtime_bench.json'))
i = 0
for t in c['sequence']['total_tokens']:
    for m in c['mask']['type']:
        d = json.loads(json.dumps(c)); d['sequence']['total_tokens'] = t; d['mask']['type'] = m
        d['name'] = f'case{i}'; json.dump(d, open(f'/tmp/r2/cfg/case{i}.json', 'w')); i += 1
PY
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 > $R/smi.csv &
SMI=$!
mark() { echo "$(date +%H:%M:%S.%N) $1" >> $R/marks.log; }
mark A; timeout 120 $B kernel --config configs/gpu_runtime_bench.json --no-check --out $R/A.json > $R/A.log 2>&1
for i in 0 1 2 3 4 5; do mark B$i; timeout 60 $B kernel --config $R/cfg/case$i.json --no-check --out $R/B$i.json > $R/B$i.log 2>&1; done
mark C; timeout 120 mpirun --oversubscribe --allow-run-as-root --bind-to none -np 1 $B --config configs/gpu_runtime_bench.json --backend gpu --out $R/C.json > $R/C.log 2>&1
mark D; timeout 120 $B kernel --config configs/gpu_runtime_bench.json --no-check --out $R/D.json > $R/D.log 2>&1
mark end
kill $SMI
grep -h 'gpu_runtime_bench/\|case[0-9]/' $R/A.log $R/B?.log $R/C.log $R/D.log
(cd $R && tar cJf "$OUT/r2.tar.xz" .)
