#!/usr/bin/env bash
# J (session 45): where consumer 0 of each block waits in the one launch, the MERGE kernel's one
# launch and the 2, 3 and 5 stages of issue 12's 32k stage benchmark (stage_probe built by
# build_j.sh: its table, two rounds alternating, then each variant traced once: probe G's per-SM
# split and probe J's waits). About 150 s. Carry ["build-gpu-carry/s45j"]:
#   OUT=$OUT bash build-gpu-carry/s45j/call_j.sh
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
C=build-gpu-carry/s45j
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv > $OUT/j.txt
timeout 200 $C/stage_probe_j configs/gpu_stages_bench.json --rounds 2 --seconds 0.5 \
  --only one,mergek,stages2,stages3,stages5 >> $OUT/j.txt 2>&1
echo "rc=$?" >> $OUT/j.txt
