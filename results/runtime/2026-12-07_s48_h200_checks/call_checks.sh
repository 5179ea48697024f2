#!/usr/bin/env bash
# Issue 12's "Done when" at 9bb11ad (binaries built here from it): scripts/gpu_runtime.sh checks
# (the gpu tests, every strategy x mask at cp 2 and 4 with --check through the staged MPI
# communicator, node-aware and hybrid plans, the runtime against the bare kernel). About 4 minutes.
#   OUT=$OUT bash build-gpu-carry/s48/call_checks.sh   (carry ["build-gpu-carry/s48"])
set -u
OUT=${OUT:-out}; mkdir -p "$OUT" /tmp/g
MAGI_COMMIT=9bb11ad OUT=/tmp/g BIN=build-gpu-carry/s48 timeout 540 bash scripts/gpu_runtime.sh checks > /tmp/g/stdout.log 2>&1
echo "rc=$?" >> /tmp/g/run.log
cp /tmp/g/run.log "$OUT/"
tar cJf "$OUT/g.tar.xz" -C /tmp/g .
