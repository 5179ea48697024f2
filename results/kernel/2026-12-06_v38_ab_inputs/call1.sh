#!/usr/bin/env bash
# Session 34, call 1: v37 (E: the forward's entry and slice read a tile ahead; d 64 forward ring of
# 3 stages) against base (44a358b): E's gpu tests, ab32k.json --no-check base / E alternating,
# then ncu source counters (SASS with stall samples) of E's forward: d 64 full and d 128 varlen
# sliding window, 32k. Carry build-gpu-carry/s34.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s34
tar xJf $S/s33.tar.xz -C build-gpu-carry && tar xJf $S/v37.tar.xz -C $S
t0=$(date +%s)
$S/E/test_kernels_cuda --gtest_brief=1 > "$OUT/E_gpu_tests.log" 2>&1
echo "E gpu tests rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/E_gpu_tests.log" | tr '\n' ' ')"
bin() { case $1 in base) echo build-gpu-carry/s33/magi-bench ;; *) echo $S/$1/magi-bench ;; esac; }
for r in 1 2 3; do
  for v in base E; do
    [ $(($(date +%s) - t0)) -gt 330 ] && { echo "stopped at 330 s"; break 2; }
    echo "## round $r $v at $(($(date +%s) - t0))s"
    $(bin $v) kernel --config $S/ab32k.json --no-check 2>/dev/null | grep -E "ab32k/[0-9]+ "
  done
done | tee "$OUT/ab.log"
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv >> "$OUT/ab.log"
for c in p_d64full p_vsw; do
  t=$(date +%s)
  timeout 90 ncu --clock-control none -k regex:flex_fwd --launch-skip 2 --launch-count 1 --section SourceCounters \
    --section WarpStateStats --section SpeedOfLight -o "$OUT/$c" -f $S/E/magi-bench kernel --config $S/$c.json --no-check > "$OUT/$c.ncu.log" 2>&1
  echo "$c ncu rc=$? $(( $(date +%s) - t ))s" | tee -a "$OUT/ab.log"
  ncu -i "$OUT/$c.ncu-rep" --page source --csv --print-source sass > "$OUT/${c}_sass.csv" 2>&1
  ncu -i "$OUT/$c.ncu-rep" --page details > "$OUT/${c}_details.txt" 2>&1
  rm -f "$OUT/$c.ncu-rep"
done
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && find . -type f ! -name all.tar.xz -delete && mv /tmp/all.tar.xz .)
