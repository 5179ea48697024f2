#!/usr/bin/env bash
# Regenerates results/simulation/ from the repository root (build-cpu/magi-bench, the cpu preset):
#   bash results/simulation/commands.sh
# The CPU runs (cpu/run_all.sh) take about five minutes on two idle cores; everything else seconds.
set -euo pipefail
BIN=${BIN:-build-cpu/magi-bench}
S=results/simulation
K=results/kernel

# 1. One-GPU kernel model: fit on full, causal and varlen causal of the H200 v27 run (16:16, d 64 and
#    128, 8k and 32k); held out: the other three masks of that file, the whole GQA 64:8 file and the
#    rest of the mask catalogue at both head layouts.
$BIN calibrate --fit $K/2026-12-04_v27_h200_kernel_h100.json --fit-masks full,causal,varlen_causal \
  --held-out $K/2026-12-04_v27_h200_kernel_h100_gqa.json $K/2026-12-04_v27_h200_kernel_catalogue.json \
  $K/2026-12-04_v27_h200_kernel_catalogue_gqa.json --device "NVIDIA H200 (v27 kernel, commit 9eb0dad)" \
  --out $S/calibration_h200_kernel.json --force | tee $S/calibration_h200_kernel.log

# 1b. The same on the H100 (the kernels of b7da4cd, timed for at least 2 s after a warm-up: the
#     record results/kernel/2026-12-06_b7da4cd_h100_*): what configs/clusters/h100_sxm_8x_ib400.json
#     uses; then the cp 1 stage benchmark predicted with it, against issue 12's measurement
#     (results/runtime/2026-12-07_s45_h100_v43/).
$BIN calibrate --fit $K/2026-12-06_b7da4cd_h100_kernel_h100.json --fit-masks full,causal,varlen_causal \
  --held-out $K/2026-12-06_b7da4cd_h100_kernel_h100_gqa.json $K/2026-12-06_b7da4cd_h100_kernel_catalogue.json \
  $K/2026-12-06_b7da4cd_h100_kernel_catalogue_gqa.json --device "NVIDIA H100 80GB HBM3 (kernels of b7da4cd)" \
  --out $S/calibration_h100_kernel.json --force | tee $S/calibration_h100_kernel.log
$BIN simulate --config configs/gpu_stages_bench.json --cluster configs/clusters/h100_single.json 2>&1 \
  | tee $S/h100_stages_bench.log

# 2. CPU ranks: measured runs (np = cp; np 4 oversubscribes the two cores), three rounds of the
#    five workloads (cpu/r1..r3), then the fit on cp 1 and 2 (compute from every rank's measured
#    compute steps, the link from what they leave) of full, causal and varlen causal (magi, ring),
#    held out: other masks and sizes at cp 1 and 2, ulysses and allgather, and cp 4. calibrate
#    keeps each case's fastest round per pass.
[ "${SKIP_RUNS:-0}" = 1 ] || bash $S/cpu/run_all.sh "$BIN"
R=($S/cpu/r[0-9]*)
$BIN calibrate --fit "${R[@]/%//fit_cp1_result.json}" "${R[@]/%//fit_cp2_result.json}" \
  --held-out "${R[@]/%//heldout_cp1_result.json}" "${R[@]/%//heldout_cp2_result.json}" "${R[@]/%//heldout_cp4_result.json}" \
  --cluster configs/clusters/cpu_2core.json --device "2-core VM, CPU reference kernel (float32)" \
  --out $S/calibration_cpu_2core.json --force | tee $S/calibration_cpu_2core.log
# ... and each round alone (how far one round's fit and held-out error move with the machine's load).
for r in "${R[@]}"; do
  $BIN calibrate --fit $r/fit_cp1_result.json $r/fit_cp2_result.json \
    --held-out $r/heldout_cp1_result.json $r/heldout_cp2_result.json $r/heldout_cp4_result.json \
    --cluster configs/clusters/cpu_2core.json --device "2-core VM, CPU reference kernel (float32)" > $r/calibration.log
done

# 3. The cluster-scale question: 4M tokens of pre-training documents, varlen causal, GQA 64:8, on
#    512 nodes x 8 H100 (and the 16M-token version at cp 4096), timed.
/usr/bin/time -v $BIN simulate --config configs/sim_varlen_causal_4m.json --cluster configs/clusters/h100_sxm_8x_ib400.json \
  --strategy magi,ring,ulysses,allgather --cp 8,64,512,4096 --csv $S/h100_varlen_causal_4m.csv \
  --force 2>&1 | tee $S/h100_varlen_causal_4m.log
/usr/bin/time -v $BIN simulate --config configs/sim_varlen_causal_4m.json --cluster configs/clusters/h100_sxm_8x_ib400.json \
  --cp 4096 2>&1 | tee $S/speed_4m_cp4096.log
/usr/bin/time -v $BIN simulate --config configs/sim_varlen_causal_16m.json --cluster configs/clusters/h100_sxm_8x_ib400.json \
  --cp 4096 2>&1 | tee $S/speed_16m_cp4096.log
$BIN simulate --config configs/sim_varlen_causal_4m.json --cluster configs/clusters/h100_sxm_8x_ib400.json \
  --cp 64,512 --tune 2>&1 | tee $S/h100_varlen_causal_4m_tune.log
