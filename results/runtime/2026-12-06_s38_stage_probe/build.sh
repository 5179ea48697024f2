#!/usr/bin/env bash
# Builds stage_probe (host code only) against a CUDA build tree of the project (default build/);
# run from the repository root:
#   bash results/runtime/2026-12-06_s38_stage_probe/build.sh [BUILD_DIR] [OUT_BINARY]
# KERNELS_LIB and KERNELS_INCLUDE (default: the build tree's kernels library and kernels/) link it
# against another build of the kernels (the s39 merge A/B's build_ab.sh); PROBE_FLAGS adds compiler flags
# (-DMAGI_FWD_TRACE with kernels patched by 2026-12-07_s43_block_trace/trace.patch).
set -euo pipefail
B=${1:-build}
O=${2:-$B/stage_probe}
D=$(dirname "$0")
KLIB=${KERNELS_LIB:-$B/kernels/cuda/libmagi_kernels_cuda.a}
KINC=${KERNELS_INCLUDE:-kernels}
g++ -std=c++20 -O2 -DNDEBUG -DFMT_HEADER_ONLY=1 ${PROBE_FLAGS:-} -Ilib -I"$KINC" -isystem /usr/local/cuda/include "$D/stage_probe.cpp" -o "$O" \
  -Wl,--start-group \
  "$B"/lib/core/plan/libmagi_core_plan.a "$B"/lib/core/cost/libmagi_core_cost.a \
  "$B"/lib/core/workload/libmagi_core_workload.a "$B"/lib/core/mask/libmagi_core_mask.a \
  "$B"/lib/core/libmagi_core_model.a "$B"/lib/core/libmagi_core_base.a \
  "$KLIB" "$B"/kernels/libmagi_flex_work_list.a "$B"/kernels/cpu/libmagi_kernels_cpu.a \
  -Wl,--end-group -L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -lpthread
