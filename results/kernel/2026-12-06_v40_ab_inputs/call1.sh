#!/usr/bin/env bash
# Prepared in session 35, not yet run (results/kernel/NOTES.md, v40), against base (b4b4b0a, the
# kernel of 7d9034b): A = the forward's producer draws an item's successor one tile before the
# item's last (kFwdNextLead = 1), B = two tiles before (kFwdNextLead = 2); backwards identical.
# Binaries git-ignored in build-gpu-carry/s36/bins.tar.xz (base, A, B: magi-bench and
# test_kernels_cuda each); copy this script to build-gpu-carry/s36/ and run
# `OUT=$OUT bash build-gpu-carry/s36/call1.sh` carrying build-gpu-carry/s36 (about 8 MB).
# gpu tests of A and B, ab32k --no-check base / A / B alternating, racecheck and synccheck of A and
# B on FlexAttentionGpu.EdgeCases; then base on firstcase.json twice (the full 32k case first, after
# itself, and after varlen causal: the first-case gap, NOTES v40). Every command under timeout
# (v39b's deadlock took a whole call); at most 7 files under $OUT, so a killed call still brings all back.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s36
[ -x $S/B/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv > "$OUT/card.txt"
ok=""
for v in A B; do
  timeout 120 $S/$v/test_kernels_cuda --gtest_brief=1 > "$OUT/${v}_gpu_tests.log" 2>&1
  rc=$?
  echo "$v gpu tests rc=$rc $(grep -E '^\[  (PASSED|FAILED)' "$OUT/${v}_gpu_tests.log" | tr '\n' ' ') at $(($(date +%s) - t0))s"
  [ $rc -eq 0 ] && ok="$ok $v"
done
for r in 1 2 3; do
  for v in base $ok; do
    [ $(($(date +%s) - t0)) -gt 360 ] && { echo "stopped at 360 s"; break 2; }
    echo "## round $r $v at $(($(date +%s) - t0))s"
    timeout 120 $S/$v/magi-bench kernel --config $S/ab32k.json --no-check 2>/dev/null | grep -E "ab32k/[0-9]+ "
  done
done | tee "$OUT/ab.log"
# The card's clocks, power and temperature every 100 ms over both rounds: a first case faster for a
# cooler die at the same power cap would show as higher SM clocks in its timed stretch.
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv -lms 100 > "$OUT/firstcase_smi.csv" 2>&1 &
smi=$!
for r in 1 2; do
  [ $(($(date +%s) - t0)) -gt 480 ] && break
  echo "## firstcase round $r at $(($(date +%s) - t0))s ($(date -u +%T.%N | cut -c1-12) UTC)"
  timeout 60 stdbuf -oL $S/base/magi-bench kernel --config $S/firstcase.json --no-check 2>/dev/null | grep --line-buffered -E "firstcase/[0-9]+ " |
    while IFS= read -r line; do echo "$(date -u +%T.%N | cut -c1-12) $line"; done
done | tee "$OUT/firstcase.log"
kill $smi 2>/dev/null
for v in $ok; do
  for tool in racecheck synccheck; do
    [ $(($(date +%s) - t0)) -gt 550 ] && break 2
    timeout 30 compute-sanitizer --tool $tool $S/$v/test_kernels_cuda --gtest_filter=FlexAttentionGpu.EdgeCases > /tmp/san.log 2>&1
    echo "$v $tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' /tmp/san.log | tail -1) at $(($(date +%s) - t0))s"
    { echo "## $v $tool"; cat /tmp/san.log; } >> "$OUT/sanitizers.log"
  done
done
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && find . -type f -delete && mv /tmp/all.tar.xz .)
