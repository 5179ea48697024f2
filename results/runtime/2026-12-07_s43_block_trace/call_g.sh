#!/usr/bin/env bash
# G (session 43): where the staged forward's time goes on each SM. stage_probe built with the block
# trace (trace.patch, -DMAGI_FWD_TRACE) on issue 12's 32k stage benchmark: its table (two rounds,
# alternating, with the control `again`), then each variant traced once (stage_probe.cpp's header:
# head / ramp / work / gaps / tail per SM, work's cost per tile and per item, the SM clock). Then
# session 42's F (call_f.sh, this tree's kernels untraced) with the budget left, in the order
# STEPS (default: probe, ncu, palindrome). Carry ["build-gpu-carry/s43"] (build_g.sh):
#   BUDGET=500 OUT=$OUT bash build-gpu-carry/s43/call_g.sh
set -u
C=build-gpu-carry/s43
R=/tmp/f; mkdir -p $R
end=$(( $(date +%s) + ${BUDGET:-500} ))
echo "## G $(date -u +%T)" | tee -a $R/f.txt
timeout 150 $C/stage_probe_g configs/gpu_stages_bench.json --rounds 2 --seconds 0.5 --only one,mergek,stages2,stages3,stages5 2>&1 | tee -a $R/f.txt
B=$C BUDGET=$(( end - $(date +%s) )) STEPS="${STEPS:-probe ncu palindrome}" bash $C/call_f.sh
