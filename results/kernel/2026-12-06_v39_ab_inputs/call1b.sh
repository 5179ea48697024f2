#!/usr/bin/env bash
# Run in session 35 (call 2): v39 call 1 again without B (B's gpu tests hung in call 1: v39b deadlocks): base / A alternating,
# then racecheck and synccheck of A. Every command under timeout.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s35
[ -x $S/A/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv > "$OUT/card.txt"
for r in 1 2 3; do
  for v in base A; do
    [ $(($(date +%s) - t0)) -gt 250 ] && { echo "stopped at 250 s"; break 2; }
    echo "## round $r $v at $(($(date +%s) - t0))s"
    timeout 120 $S/$v/magi-bench kernel --config $S/ab32k.json --no-check 2>/dev/null | grep -E "ab32k/[0-9]+ "
  done
done | tee "$OUT/ab.log"
for tool in racecheck synccheck; do
  timeout 50 compute-sanitizer --tool $tool $S/A/test_kernels_cuda --gtest_filter=FlexAttentionGpu.EdgeCases > "$OUT/A_$tool.log" 2>&1
  echo "A $tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/A_$tool.log" | tail -1) at $(($(date +%s) - t0))s"
done
