#!/usr/bin/env bash
# Session 33, call 2: the new gpu test of `magi-bench kernel --check` (small ragged cases), then the
# record at 44a358b in one call: gpu tests, the four kernel configs checked, the peers on both layouts.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
t0=$(date +%s)
timeout 60 sh tests/runtime/cuda/test_kernel_cli.sh build-gpu-carry/s33/magi-bench tests/runtime/cuda/kernel_check_small.json 16 > "$OUT/kernel_cli_check.log" 2>&1
echo "kernel_cli_check rc=$? in $(($(date +%s) - t0))s"; tail -2 "$OUT/kernel_cli_check.log"
t1=$(date +%s)
MAGI_COMMIT=44a358b BIN=build-gpu-carry/s33 OUT=$OUT/rec timeout $((575 - (t1 - t0))) bash scripts/gpu_kernel.sh > "$OUT/stdout.log" 2>&1
echo "record rc=$? in $(($(date +%s) - t1))s"
grep -E "gpu tests|PASSED|FAILED|problems|Wrote" "$OUT/rec/run.log" | head -30
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && rm -rf rec stdout.log kernel_cli_check.log && mv /tmp/all.tar.xz .)
