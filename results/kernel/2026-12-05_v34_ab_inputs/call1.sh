#!/usr/bin/env bash
# Session 29, call 1 (run from the repository root on the device machine): v34 (the forward's
# products run on across items) against base: gpu tests, sanitizers on a forward of many short
# items a block, forward A/B (two rounds, alternated), the cp 1 stage A/B, the whole GPU path's check.
set -u
S=build-gpu-carry/s29
OUT=${OUT:-out}
mkdir -p "$OUT"
(cd $S && tar xJf bins.tar.xz)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
LOG=$OUT/ab.log
t0=$(date +%s)
BUDGET=${BUDGET:-540}
left() { echo $((BUDGET - ($(date +%s) - t0))); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv; } >>"$LOG"
run() {
  local name=$1; shift
  local s=$(date +%s)
  "$@" >"$OUT/$name.out" 2>&1
  local rc=$?
  echo "$name rc=$rc $(($(date +%s) - s))s $(grep -E 'PASSED|FAILED|SUMMARY|problems|Error|error' "$OUT/$name.out" | tail -2 | tr '\n' ' ' | cut -c1-200)" | tee -a "$LOG"
}
T=${T:-A}
VARIANTS=${VARIANTS:-base A}
run tests $S/$T/test_kernels_cuda --gtest_brief=1
for tool in racecheck synccheck; do
  run $tool compute-sanitizer --tool $tool --error-exitcode 9 $S/$T/magi-bench kernel --config $S/san.json --out $OUT/san_$tool.json
done
for r in 1 2; do
  for v in $VARIANTS; do
    for c in kfa kfg kfd; do
      [ "$(left)" -gt 150 ] || break
      run ${c}_${v}_$r $S/$v/magi-bench kernel --config $S/$c.json --out $OUT/${c}_${v}_$r.json
    done
  done
done
python3 $S/ab_k.py "$OUT" | tee -a "$LOG"
i=0
for v in ${STAGE_ORDER:-base $T $T base}; do
  i=$((i + 1))
  [ "$(left)" -gt 90 ] || break
  run stages_${v}_$i mpirun -np 1 $S/$v/magi-bench --config $S/stages_ab.json --backend gpu --comm nccl --out $OUT/stages_${v}_$i.json
  grep -E "stages_ab/" "$OUT/stages_${v}_$i.out" >>"$LOG"
done
[ "$(left)" -gt 70 ] && run gpu_masks mpirun -np 4 --oversubscribe $S/$T/magi-bench --config configs/gpu_masks.json --backend gpu --comm mpi --check
echo "done at $(($(date +%s) - t0))s" | tee -a "$LOG"
(cd "$OUT" && tar cJf all.tar.xz --exclude=all.tar.xz --exclude=ab.log . && find . -type f ! -name all.tar.xz ! -name ab.log -delete)
