#!/usr/bin/env bash
# Prepared in session 32 and NOT RUN.
# Session 32, prepared for the call after call3.sh, if the 1 s warm-up holds: the record with it.
# The device's copy of the tree gets results/kernel/2026-12-06_warmup_1s_patch.diff (the peer
# script's half); build-gpu-carry/s32c holds magi-bench with the patch (d7f4056 + patch) and
# a589ad9's test_kernels_cuda. Carry build-gpu-carry/s32/call4.sh and build-gpu-carry/s32c.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
patch -p1 < results/kernel/2026-12-06_warmup_1s_patch.diff > "$OUT/patch.log" 2>&1 || { echo "patch failed"; cat "$OUT/patch.log"; exit 1; }
t0=$(date +%s)
MAGI_COMMIT="${MAGI_COMMIT:-d7f4056+warmup_1s}" BIN=build-gpu-carry/s32c OUT=$OUT/rec timeout 570 bash scripts/gpu_kernel.sh > "$OUT/stdout.log" 2>&1
echo "record rc=$? in $(($(date +%s) - t0))s"
grep -E "gpu tests|PASSED|FAILED|problems|^kernel_h100" "$OUT/rec/run.log" | head -30
(cd "$OUT" && tar cJf /tmp/all.tar.xz . && rm -rf rec stdout.log patch.log && mv /tmp/all.tar.xz .)
