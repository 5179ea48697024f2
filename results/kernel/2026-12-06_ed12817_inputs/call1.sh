#!/usr/bin/env bash
# Session 32, call 1: main's kernel (ed12817's build) checked on a GPU: the gpu tests, racecheck and
# synccheck on FlexAttentionGpu.EdgeCases (its causal 1000 case walks back), gpu_masks at cp 4;
# then magi-bench kernel on kernel_h100_gqa.json without the check, timed, to size the check's share.
set -u
B=build-gpu-carry/s32
OUT=${OUT:-out}; mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit --format=csv > "$OUT/card.txt"
$B/test_kernels_cuda --gtest_brief=1 > "$OUT/tests.log" 2>&1; echo "tests rc=$? $(tail -1 "$OUT/tests.log") at $(($(date +%s) - t0))s"
timeout 150 mpirun -np 4 --oversubscribe $B/magi-bench --config configs/gpu_masks.json --backend gpu --comm mpi --check > "$OUT/masks.log" 2>&1; echo "gpu_masks rc=$? $(grep -E '^# Cases' "$OUT/masks.log" | tail -1) at $(($(date +%s) - t0))s"
for tool in racecheck synccheck; do
  timeout 120 compute-sanitizer --tool $tool $B/test_kernels_cuda --gtest_filter=FlexAttentionGpu.EdgeCases > "$OUT/$tool.log" 2>&1
  echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|hazard' "$OUT/$tool.log" | tail -2 | tr '\n' ' ') at $(($(date +%s) - t0))s"
done
s=$(date +%s); timeout 120 $B/magi-bench kernel --config configs/kernel_h100_gqa.json --no-check --out "$OUT/gqa_nocheck.json" > "$OUT/gqa_nocheck.log" 2>&1
echo "kernel_h100_gqa --no-check rc=$? in $(($(date +%s) - s))s"
(cd "$OUT" && tar cJf all.tar.xz --exclude=all.tar.xz . && find . -type f ! -name all.tar.xz -delete)
