#!/usr/bin/env bash
# Prepared in session 34 and run in session 35 (call 1; B's gpu tests hung: results/kernel/NOTES.md, v39), against base (1f1f3a1,
# eab197c's kernel): A = v39a (the backward's descriptors from one base, the item-invariant ones
# taken opaque per tile) + v39c (the forward's first P V of an item overwrites O, no clearing)
# + v39d (the forward's mask tests against the thread's columns); B = A + v39b (the forward's
# next ticket drawn a tile ahead, the producer at 32 registers). The passes are separate kernels:
# A's backward against base's is v39a, A's forward v39c + v39d; B's forward against A's is v39b,
# and B's backward is A's (a control). Binaries git-ignored in build-gpu-carry/s35/bins.tar.xz (base, A, B: magi-bench
# and test_kernels_cuda each); copy this script to build-gpu-carry/s35/ and run
# `OUT=$OUT bash build-gpu-carry/s35/call1.sh` carrying build-gpu-carry/s35 (about 8 MB).
# gpu tests of A and B, ab32k.json --no-check base / A / B alternating, then racecheck and synccheck
# of A and B on FlexAttentionGpu.EdgeCases, as time allows.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s35
tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv > "$OUT/card.txt"
for v in A B; do
  $S/$v/test_kernels_cuda --gtest_brief=1 > "$OUT/${v}_gpu_tests.log" 2>&1
  echo "$v gpu tests rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/${v}_gpu_tests.log" | tr '\n' ' ') at $(($(date +%s) - t0))s"
done
for r in 1 2 3; do
  for v in base A B; do
    [ $(($(date +%s) - t0)) -gt 380 ] && { echo "stopped at 380 s"; break 2; }
    echo "## round $r $v at $(($(date +%s) - t0))s"
    $S/$v/magi-bench kernel --config $S/ab32k.json --no-check 2>/dev/null | grep -E "ab32k/[0-9]+ "
  done
done | tee "$OUT/ab.log"
for v in A B; do
  for tool in racecheck synccheck; do
    [ $(($(date +%s) - t0)) -gt 520 ] && break 2
    timeout 50 compute-sanitizer --tool $tool $S/$v/test_kernels_cuda --gtest_filter=FlexAttentionGpu.EdgeCases > "$OUT/${v}_$tool.log" 2>&1
    echo "$v $tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/${v}_$tool.log" | tail -1) at $(($(date +%s) - t0))s"
  done
done
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && find . -type f -delete && mv /tmp/all.tar.xz .)
