#!/usr/bin/env bash
# Prepared in session 35, not yet run: issue 12's stage benchmark (configs/gpu_stages_bench.json:
# cp 1, 32k, one launch against 2, 3 and 5 stages) with base (b4b4b0a), A and B of call1.sh
# alternating, without the check: the stages' items are short, and the 5-stage varlen causal
# forward (0.90-0.93 of one launch) is what issue 12 still misses. Same binaries as call1.sh;
# copy to build-gpu-carry/s36/ and run `OUT=$OUT bash build-gpu-carry/s36/call2.sh`.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s36
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -x $S/B/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s)
for r in 1 2; do
  for v in base A B; do
    [ $(($(date +%s) - t0)) -gt 420 ] && { echo "stopped at 420 s"; break 2; }
    echo "## round $r $v at $(($(date +%s) - t0))s"
    timeout 150 mpirun --oversubscribe --allow-run-as-root --bind-to none -np 1 $S/$v/magi-bench --config configs/gpu_stages_bench.json \
      --backend gpu --comm nccl --no-check --out "$OUT/stages_${v}_$r.json" 2>/dev/null | grep -E "gpu_stages_bench/[0-9]+ "
  done
done | tee "$OUT/ab.log"
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && find . -type f -delete && mv /tmp/all.tar.xz .)
