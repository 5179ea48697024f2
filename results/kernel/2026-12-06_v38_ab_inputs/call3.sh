#!/usr/bin/env bash
# Session 34, call 3: the kept kernel (v38's forward, eab197c, F) on the GPU: its gpu tests, then
# ab32k.json --no-check base (44a358b) / F / base / F while the device time lasts. Carry build-gpu-carry/s34.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s34
tar xJf $S/s33.tar.xz -C build-gpu-carry && tar xJf $S/v38F.tar.xz -C $S
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv > "$OUT/card.txt"
$S/F/magi-bench --version >> "$OUT/card.txt"
$S/F/test_kernels_cuda --gtest_brief=1 > "$OUT/F_gpu_tests.log" 2>&1
echo "F gpu tests rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/F_gpu_tests.log" | tr '\n' ' ') at $(($(date +%s) - t0))s"
for r in 1 2; do
  for v in base F; do
    [ $(($(date +%s) - t0)) -gt ${BUDGET:-120} ] && { echo "stopped at ${BUDGET:-120} s"; break 2; }
    b=$S/F/magi-bench; [ $v = base ] && b=build-gpu-carry/s33/magi-bench
    echo "## round $r $v at $(($(date +%s) - t0))s"
    $b kernel --config $S/ab32k.json --no-check 2>/dev/null | grep -E "ab32k/[0-9]+ "
  done
done | tee "$OUT/ab.log"
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && find . -type f -delete && mv /tmp/all.tar.xz .)
