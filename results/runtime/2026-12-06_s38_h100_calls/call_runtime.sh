#!/usr/bin/env bash
# gpu_runtime.sh whole at the carried commit, with nvidia-smi sampling every 100 ms; output tarred.
set -u
mkdir -p build-gpu-carry/s38 && tar xJf build-gpu-carry/s38c/bins.tar.xz -C build-gpu-carry/s38
R=/tmp/rt; mkdir -p $R
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 > $R/smi.csv &
SMI=$!
timeout ${BUDGET:-530} env OUT=$R BIN=build-gpu-carry/s38 STEP_LIMIT=250 MAGI_COMMIT=$MAGI_COMMIT bash scripts/gpu_runtime.sh
echo "gpu_runtime.sh rc=$?"
kill $SMI
(cd $R && tar cJf "$OUT/rt.tar.xz" .)
