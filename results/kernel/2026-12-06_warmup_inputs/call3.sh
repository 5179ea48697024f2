#!/usr/bin/env bash
# Prepared in session 32, run in session 33 (2026-12-06_warmup_h100_ab.log): build-gpu-carry/s32c is d7f4056 with the 1 s warm-up (since landed as 1532234), build-gpu-carry/s32b a589ad9.
# Session 32, call 3: the kernel benchmark's warm-up lasting at least 1 s (new, build-gpu-carry/s32c)
# against a589ad9's (old, s32b), on configs/kernel_catalogue.json: --no-check twice each, alternating,
# then new with the check. The question: does a case's figure still depend on whether a check's pause
# came before it (old: 16:16 shared question backward 391 / 394 without, 462 with)?
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv > "$OUT/card.txt"
t0=$(date +%s)
run() { local tag=$1; shift; echo "## $tag at $(($(date +%s) - t0))s"; "$@" 2>&1 | grep -E "kernel_catalogue/"; }
for r in 1 2; do
  run "new --no-check $r" build-gpu-carry/s32c/magi-bench kernel --config configs/kernel_catalogue.json --no-check
  run "old --no-check $r" build-gpu-carry/s32b/magi-bench kernel --config configs/kernel_catalogue.json --no-check
done
run "new with check" build-gpu-carry/s32c/magi-bench kernel --config configs/kernel_catalogue.json
run "old with check" build-gpu-carry/s32b/magi-bench kernel --config configs/kernel_catalogue.json
