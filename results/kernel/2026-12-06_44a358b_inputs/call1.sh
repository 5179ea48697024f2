#!/usr/bin/env bash
# Session 33, call 1: the record at 1532234 (1 s warm-up, every case timed before any check), then
# kernel_catalogue without the check on the warm card: do its figures now match the record's?
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
t0=$(date +%s)
MAGI_COMMIT=1532234 BIN=build-gpu-carry/s33 OUT=$OUT/rec timeout 500 bash scripts/gpu_kernel.sh > "$OUT/stdout.log" 2>&1
echo "record rc=$? in $(($(date +%s) - t0))s"
grep -E "gpu tests|PASSED|FAILED|problems" "$OUT/rec/run.log" | head -30
left=$((570 - ($(date +%s) - t0)))
if [ $left -gt 40 ]; then
  echo "## catalogue --no-check at $(($(date +%s) - t0))s"
  timeout $left build-gpu-carry/s33/magi-bench kernel --config configs/kernel_catalogue.json --no-check 2>&1 | grep -E "kernel_catalogue/" | tee "$OUT/catalogue_nocheck.log"
fi
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && rm -rf rec stdout.log catalogue_nocheck.log && mv /tmp/all.tar.xz .)
