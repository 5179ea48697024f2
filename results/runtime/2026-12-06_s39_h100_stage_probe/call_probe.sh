#!/usr/bin/env bash
# stage_probe on the stage-benchmark configs (32k three masks, 128k varlen causal), with nvidia-smi sampling.
set -u
B=build-gpu-carry/s39; mkdir -p $B build && tar xJf build-gpu-carry/s39c/bins.tar.xz -C $B
xz -dc build-gpu-carry/s39c/probe_unstripped.xz > build/stage_probe_unstripped
R=/tmp/probe; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $R/card.txt
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 > $R/smi.csv &
SMI=$!
end=$(( $(date +%s) + ${BUDGET:-400} ))
for cfg in gpu_stages_bench gpu_stages_bench_128k; do
  left=$(( end - $(date +%s) )); [ $left -lt 20 ] && break
  echo "## $cfg $(date -u +%T)" | tee -a $R/probe.txt
  timeout $left $B/stage_probe configs/$cfg.json --rounds 2 --seconds 1.5 2>&1 | tee -a $R/probe.txt
  echo "rc=$?" | tee -a $R/probe.txt
done
kill $SMI
# The forward kernels' SASS (bf16, d 128, plain and MERGE), for comparing their tile loops.
for m in 0 1; do
  /usr/local/cuda/bin/cuobjdump -sass -fun "_ZN4magi7kernels4cuda6detail15flex_fwd_kernelI13__nv_bfloat16Li128ELi128ELi2ELb${m}EEEvNS2_9FwdParamsIT_EE" \
    build/stage_probe_unstripped > $R/fwd_merge$m.sass 2>&1
  echo "sass merge=$m: $(wc -l < $R/fwd_merge$m.sass) lines"
done
(cd $R && tar cJf "$OUT/probe.tar.xz" .)
