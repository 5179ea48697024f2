#!/usr/bin/env bash
# Prepared in session 33, not yet run; after call4.sh, if v36 (build-gpu-carry/s33/A) holds:
# issue 12's stage benchmark (configs/gpu_stages_bench.json: cp 1, 32k, one launch against 2, 3
# and 5 stages), base (44a358b, build-gpu-carry/s33) and v36 alternating, without the check.
# Carry build-gpu-carry/s33.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
t0=$(date +%s)
for r in 1 2; do
  for v in base A; do
    [ $(($(date +%s) - t0)) -gt 420 ] && { echo "stopped at 420 s"; break 2; }
    b=build-gpu-carry/s33/magi-bench; [ $v = A ] && b=build-gpu-carry/s33/A/magi-bench
    echo "## round $r $v at $(($(date +%s) - t0))s"
    mpirun --oversubscribe --allow-run-as-root --bind-to none -np 1 $b --config configs/gpu_stages_bench.json \
      --backend gpu --comm nccl --no-check --out "$OUT/stages_${v}_$r.json" 2>/dev/null | grep -E "gpu_stages_bench/[0-9]+ "
  done
done | tee "$OUT/ab.log"
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && rm -f ab.log stages_*.json && mv /tmp/all.tar.xz .)
