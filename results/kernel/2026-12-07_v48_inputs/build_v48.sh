#!/usr/bin/env bash
# Builds v48's carry from a clean checkout of main (run in session 50 by scripts/gpu_ab.sh, its
# v48/ renamed cand/): base's magi-bench, then with v48_deferred_store_patch.diff applied v48's
# magi-bench and test_kernels_cuda (the CUDA build tree `build` of scripts/setup.sh), packed with
# the three configs into $S/bins.tar.xz; the patch is reverted after. About 5 minutes on 2 cores
# once `build` exists.
#   S=build-gpu-carry/s50 bash results/kernel/2026-12-07_v48_inputs/build_v48.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
IN=results/kernel/2026-12-07_v48_inputs
S=${S:-build-gpu-carry/s50}
git diff --quiet -- kernels || { echo "build_v48.sh: kernels/ has changes; run it on a clean checkout" >&2; exit 2; }
[ -f build/build.ninja ] || bash scripts/setup.sh release
work=$(mktemp -d)
trap 'git checkout -- kernels/cuda/flex_fwd.cuh; rm -rf "$work"' EXIT
mkdir -p "$S" "$work/base" "$work/v48"
cmake --build build -j "$(nproc)" --target magi-bench
cp build/magi-bench "$work/base/"
git apply "$IN/v48_deferred_store_patch.diff"
cmake --build build -j "$(nproc)" --target magi-bench test_kernels_cuda
cp build/magi-bench build/tests/kernels/cuda/test_kernels_cuda "$work/v48/"
tar cf - -C "$work" base v48 | xz -T0 -6 > "$S/bins.tar.xz"
cp results/kernel/2026-12-07_s49_h100_probes/{ab_fwd,ab_fwd_gqa,check_cand}.json "$S/"
git checkout -- kernels/cuda/flex_fwd.cuh
cmake --build build -j "$(nproc)" --target magi-bench test_kernels_cuda  # main's binaries again
echo "build_v48.sh: $S ready ($(du -h "$S/bins.tar.xz" | cut -f1))"
