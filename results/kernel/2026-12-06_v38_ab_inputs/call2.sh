#!/usr/bin/env bash
# Session 34, call 2: v38 (D: the forward's entry and slice read a tile ahead, every wgmma
# descriptor one add on a base; N: D with the d 64 forward on 160-key tiles) against base
# (44a358b). gpu tests of D and N, ab32k.json --no-check base / D / N alternating, then
# racecheck and synccheck of N on FlexAttentionGpu.EdgeCases and gpu_masks (cp 4, MPI) with N
# as time allows. Carry build-gpu-carry/s34.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s34
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tar xJf $S/s33.tar.xz -C build-gpu-carry && tar xJf $S/v38.tar.xz -C $S
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv > "$OUT/card.txt"
for v in D N; do
  $S/$v/test_kernels_cuda --gtest_brief=1 > "$OUT/${v}_gpu_tests.log" 2>&1
  echo "$v gpu tests rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/${v}_gpu_tests.log" | tr '\n' ' ') at $(($(date +%s) - t0))s"
done
bin() { case $1 in base) echo build-gpu-carry/s33/magi-bench ;; *) echo $S/$1/magi-bench ;; esac; }
for r in 1 2 3; do
  for v in base D N; do
    [ $(($(date +%s) - t0)) -gt 360 ] && { echo "stopped at 360 s"; break 2; }
    echo "## round $r $v at $(($(date +%s) - t0))s"
    $(bin $v) kernel --config $S/ab32k.json --no-check 2>/dev/null | grep -E "ab32k/[0-9]+ "
  done
done | tee "$OUT/ab.log"
for tool in racecheck synccheck; do
  timeout 60 compute-sanitizer --tool $tool $S/N/test_kernels_cuda --gtest_filter=FlexAttentionGpu.EdgeCases > "$OUT/N_$tool.log" 2>&1
  echo "N $tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|hazard' "$OUT/N_$tool.log" | tail -2 | tr '\n' ' ') at $(($(date +%s) - t0))s"
done
left=$((575 - ($(date +%s) - t0)))
if [ $left -gt 40 ]; then
  timeout $left mpirun -np 4 --oversubscribe $S/N/magi-bench --config configs/gpu_masks.json --backend gpu --comm mpi --check > "$OUT/N_masks.log" 2>&1
  echo "N gpu_masks rc=$? $(grep -E '^# Cases' "$OUT/N_masks.log" | tail -1) at $(($(date +%s) - t0))s"
fi
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && find . -type f -delete && mv /tmp/all.tar.xz .)
