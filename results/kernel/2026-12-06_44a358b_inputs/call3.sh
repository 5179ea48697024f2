#!/usr/bin/env bash
# Session 33, call 3: how a config's figures move with the card's temperature. nvidia-smi every
# 100 ms; 15 s idle; kernel_catalogue.json --no-check three times back to back; 30 s idle; once more.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 > "$OUT/smi.csv" &
smi=$!
t0=$(date +%s.%N)
stamp() { echo "## $1 at $(echo "$(date +%s.%N) - $t0" | bc) s"; }
cat_run() { build-gpu-carry/s33/magi-bench kernel --config configs/kernel_catalogue.json --no-check 2>/dev/null | grep -E "kernel_catalogue/"; }
sleep 15
for r in 1 2 3; do stamp "round $r"; cat_run; done
stamp "idle"; sleep 30
stamp "round 4 (after 30 s idle)"; cat_run
stamp "end"
kill $smi
