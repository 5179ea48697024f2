#!/usr/bin/env bash
# gpu_kernel.sh MODE at the carried commit, with nvidia-smi sampling every 100 ms; output tarred.
set -u
mkdir -p build-gpu-carry/s38 && tar xJf build-gpu-carry/s38c/bins.tar.xz -C build-gpu-carry/s38
R=/tmp/k; mkdir -p $R
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 > $R/smi.csv &
SMI=$!
timeout ${BUDGET:-540} env OUT=$R BIN=build-gpu-carry/s38 MAGI_COMMIT=$MAGI_COMMIT bash scripts/gpu_kernel.sh $1
echo "gpu_kernel.sh $1 rc=$?"
kill $SMI
(cd $R && tar cJf "$OUT/k_$1.tar.xz" .)
