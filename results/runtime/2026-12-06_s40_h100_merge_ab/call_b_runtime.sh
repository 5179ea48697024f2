#!/usr/bin/env bash
# The merge candidate B (merge_b.patch applied on main) through the runtime: the kernel's and the
# CUDA device's gpu tests, then the stage benchmark at 32k (--check) twice, the first run only
# warming the card (a process's first timed case ran 2.5-3% faster than later: NOTES, session 39),
# and at 128k; per-stage ratios by runtime_vs_kernel.py. Carry ["build-gpu-carry/s40b"]:
#   BUDGET=330 OUT=$OUT bash build-gpu-carry/s40b/call_b_runtime.sh
set -u
B=build-gpu-carry/s40; mkdir -p $B && tar xJf build-gpu-carry/s40b/bins.tar.xz -C $B
R=/tmp/rt; mkdir -p $R
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
MPIRUN="mpirun --oversubscribe --allow-run-as-root --bind-to none"
nvidia-smi -L > $R/card.txt
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 200 > $R/smi.csv &
SMI=$!
step() { local name=$1; shift; timeout 200 "$@" > $R/$name.log 2>&1; echo "# $name rc=$? $(grep -E '^\[  (PASSED|FAILED) |cases checked' $R/$name.log | head -2 | tr '\n' ' ')" | tee -a $R/run.log; }
step test_kernels $B/test_kernels_cuda --gtest_brief=1
step test_cuda_device $B/test_runtime_cuda_device --gtest_brief=1
step stages_warm $MPIRUN -np 1 $B/magi-bench --config configs/gpu_stages_bench.json --backend gpu --comm nccl --no-check --out $R/warm.json
step stages_nccl $MPIRUN -np 1 $B/magi-bench --config configs/gpu_stages_bench.json --backend gpu --comm nccl --check --out $R/gpu_stages_bench.json
step stages_128k $MPIRUN -np 1 $B/magi-bench --config configs/gpu_stages_bench_128k.json --backend gpu --comm nccl --out $R/gpu_stages_bench_128k.json
for f in warm gpu_stages_bench gpu_stages_bench_128k; do
  python3 - $R/$f.json <<'PY' | tee -a $R/run.log
import json, sys
r = json.load(open(sys.argv[1]))
one = {}
for c in r["cases"]:
    if c.get("skipped"): continue
    d = c["details"]["plan"]["overlap_degree"]
    key = c["mask"]
    if d == 0: one[key] = (c["fwd_tflops_per_gpu"], c["bwd_tflops_per_gpu"])
    else: print(f'{sys.argv[1].split("/")[-1]:28s} {key:14s} {d + 1} stages fwd {c["fwd_tflops_per_gpu"] / one[key][0]:.3f} bwd {c["bwd_tflops_per_gpu"] / one[key][1]:.3f}')
PY
done
kill $SMI
(cd $R && tar cJf "$OUT/rt.tar.xz" .)
