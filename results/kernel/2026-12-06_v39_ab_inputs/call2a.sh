#!/usr/bin/env bash
# Run in session 35 (call 3): issue 12's stage benchmark (configs/gpu_stages_bench.json: cp 1, 32k,
# one launch against 2, 3 and 5 stages) with base (1f1f3a1) and A (v39a+c+d) alternating, without
# the check; call2.sh with A for B (B hung in call 1) and every run under timeout. Binaries
# git-ignored in build-gpu-carry/s35/bins.tar.xz; run `OUT=$OUT bash build-gpu-carry/s35/call2a.sh`.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s35
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -x $S/A/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s)
for r in 1 2; do
  for v in base A; do
    [ $(($(date +%s) - t0)) -gt 200 ] && { echo "stopped at 200 s"; break 2; }
    echo "## round $r $v at $(($(date +%s) - t0))s"
    timeout 150 mpirun --oversubscribe --allow-run-as-root --bind-to none -np 1 $S/$v/magi-bench --config configs/gpu_stages_bench.json \
      --backend gpu --comm nccl --no-check --out "$OUT/stages_${v}_$r.json" 2>/dev/null | grep -E "gpu_stages_bench/[0-9]+ "
  done
done | tee "$OUT/ab.log"
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && find . -type f -delete && mv /tmp/all.tar.xz .)
