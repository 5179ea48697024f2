#!/usr/bin/env bash
# v45d (cp 1 stage cuts at the document end that splits the fewest rows): issue 12's stage benchmark on
# varlen causal (32k with --check, 128k) with v45d, then v45d against base on the 32k forward
# (stages_vc_fwd.json), alternating, as long as time is left.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT" /tmp/r; S=build-gpu-carry/s45c
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
M="mpirun --oversubscribe --allow-run-as-root --bind-to none -np 1"
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv >> $OUT/v45d.txt
(nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 200 > /tmp/r/smi.csv) & SMI=$!
echo "## vc32k at $(el)s" >> $OUT/v45d.txt
timeout 150 $M $S/magi-bench-v45d --config $S/vc32k.json --backend gpu --comm nccl --check --out /tmp/r/gpu_stages_bench_vc.json > /tmp/r/vc32k.log 2>&1; echo "rc=$?" >> $OUT/v45d.txt
echo "## 128k at $(el)s" >> $OUT/v45d.txt
timeout 150 $M $S/magi-bench-v45d --config configs/gpu_stages_bench_128k.json --backend gpu --comm nccl --out /tmp/r/gpu_stages_bench_128k.json > /tmp/r/vc128k.log 2>&1; echo "rc=$?" >> $OUT/v45d.txt
python3 scripts/runtime_vs_kernel.py --stages /tmp/r/gpu_stages_bench_vc.json --stages /tmp/r/gpu_stages_bench_128k.json >> $OUT/v45d.txt 2>&1
i=0
for v in base v45d base v45d; do
  [ $(el) -gt 330 ] && break
  i=$((i+1)); echo "## $v at $(el)s" >> $OUT/v45d.txt
  timeout 60 $M $S/magi-bench-$v --config $S/stages_vc_fwd.json --backend gpu --comm nccl --out /tmp/r/${v}_$i.json 2>&1 | grep -E 'stages_vc_fwd/[0-9]+ ' >> $OUT/v45d.txt
done
kill $SMI; echo "done at $(el)s" >> $OUT/v45d.txt
tar cJf $OUT/r.tar.xz -C /tmp/r .
