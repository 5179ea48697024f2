#!/usr/bin/env bash
# Session 44: free forward items (kFwdWriteFree) on the H100. Carry ["build-gpu-carry/s44"] (or $B).
#   STEPS="kernels stages stages128k" OUT=$OUT bash build-gpu-carry/s44/call.sh
# Steps run in the order given while the elapsed time is below LIMIT (default 560 s).
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
B=${B:-build-gpu-carry/s44}  # a folder with magi-bench and the three gpu test binaries
LIMIT=${LIMIT:-560}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
MPIRUN="mpirun --oversubscribe --allow-run-as-root --bind-to none"
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv | tee -a $LOG
(nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 200 > $OUT/smi.csv 2>&1 &)
step() {  # step NAME SECONDS COMMAND...
  local name=$1 lim=$2; shift 2
  local left=$(( LIMIT - $(el) ))
  [ $left -lt 20 ] && { echo "# $name: skipped at $(el)s" | tee -a $LOG; return; }
  [ $lim -gt $left ] && lim=$left
  timeout $lim "$@" > "$OUT/$name.log" 2>&1
  echo "# $name: rc=$? at $(el)s  $(grep -E '^\[  (PASSED|FAILED) |cases checked|FAIL' "$OUT/$name.log" | head -3 | tr '\n' ' ')" | tee -a $LOG
}
for s in ${STEPS:-kernels stages stages128k}; do
  case $s in
    kernels) step test_kernels 150 $B/test_kernels_cuda --gtest_brief=1 ;;
    stages) step stages_nccl 500 $MPIRUN -np 1 $B/magi-bench --config configs/gpu_stages_bench.json --backend gpu --comm nccl --check --out $OUT/gpu_stages_bench.json ;;
    stages128k) step stages_128k_nccl 300 $MPIRUN -np 1 $B/magi-bench --config configs/gpu_stages_bench_128k.json --backend gpu --comm nccl --out $OUT/gpu_stages_bench_128k.json ;;
    device) step test_cuda_device 200 $B/test_runtime_cuda_device --gtest_brief=1 ;;
    comm) step test_comm_staged 120 $MPIRUN -np 3 $B/test_cuda_comm_mpi --gtest_brief=1 --gtest_color=no --gtest_filter='StagedMpi.*:NcclBuild.*'
          step test_comm_nccl_np1 60 $MPIRUN -np 1 $B/test_cuda_comm_mpi --gtest_brief=1 --gtest_color=no --gtest_filter='Nccl.*' ;;
    masks) for cfg_min in gpu_masks=80 gpu_masks_fp16=30 gpu_nodes=22 gpu_hybrid=12; do
             cfg=${cfg_min%=*}
             step $cfg 300 $MPIRUN -np 4 $B/magi-bench --config configs/$cfg.json --backend gpu --comm mpi --check --out $OUT/$cfg.json
             step ${cfg}_report 30 python3 tests/runtime/check_report.py $OUT/$cfg.json ${cfg_min#*=}
           done ;;
    runtime) step runtime_bench 200 $MPIRUN -np 1 $B/magi-bench --config configs/gpu_runtime_bench.json --backend gpu --out $OUT/gpu_runtime_bench.json
             step kernel_bench 200 $B/magi-bench kernel --config configs/gpu_runtime_bench.json --no-check --out $OUT/gpu_runtime_bench_kernel.json ;;
  esac
done
pkill nvidia-smi
xz -f $OUT/smi.csv $OUT/*.json 2>/dev/null
echo "# done at $(el)s" | tee -a $LOG
