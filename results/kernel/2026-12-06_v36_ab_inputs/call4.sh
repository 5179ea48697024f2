#!/usr/bin/env bash
# Prepared in session 33, not yet run: v36 (the dQ workspace's evict_last lines demoted once
# converted, build-gpu-carry/s33/A) and diagnostic R (base kernel, L2 persisting lines reset at
# each case's start, build-gpu-carry/s33/R) against base (44a358b, build-gpu-carry/s33).
# Carry build-gpu-carry/s33 (about 45 MB). Two rounds, variants alternating, --no-check.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
t0=$(date +%s)
build-gpu-carry/s33/A/test_kernels_cuda --gtest_brief=1 > "$OUT/A_gpu_tests.log" 2>&1
echo "A gpu tests rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/A_gpu_tests.log" | tr '\n' ' ')"
bin() { case $1 in base) echo build-gpu-carry/s33/magi-bench ;; *) echo build-gpu-carry/s33/$1/magi-bench ;; esac; }
for r in 1 2; do
  for v in base R A; do
    for c in kernel_h100 kernel_catalogue; do
      [ $(($(date +%s) - t0)) -gt 520 ] && { echo "stopped at 520 s"; break 3; }
      echo "## round $r $v $c at $(($(date +%s) - t0))s"
      $(bin $v) kernel --config configs/$c.json --no-check 2>/dev/null | grep -E "$c/[0-9]+ "
    done
  done
done | tee "$OUT/ab.log"
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && rm -f ab.log A_gpu_tests.log && mv /tmp/all.tar.xz .)
