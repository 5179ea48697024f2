#!/usr/bin/env bash
# Session 35, call 4 (carrying build-gpu-carry/s35r: magi-bench and test_kernels_cuda of b4b4b0a, stripped, xz): the record at b4b4b0a (kernel 7d9034b: v39 c+d) in one call, written straight
# to $OUT (8 files): gpu tests, the four kernel configs checked, the peers on both layouts.
set -u
S=build-gpu-carry/s35r
tar xJf $S/bins.tar.xz -C $S
MAGI_COMMIT=b4b4b0a BIN=$S/bin OUT=$OUT bash scripts/gpu_kernel.sh > /tmp/stdout.log 2>&1
echo "record rc=$?"
grep -E "gpu tests|PASSED|FAILED|problems|Wrote|floor|FAIL|PASS" "$OUT/run.log" | tail -40
