#!/usr/bin/env bash
# Session 30's prepared call for kernel v35's candidates (results/kernel/NOTES.md), run from the
# repository root on the device machine; no device was lent in session 30, so it has not run.
# Backward forms against base (c0a57b7), binaries in build-gpu-carry/s30/bins.tar.xz:
#   H  (H.patch): a GQA item walks its heads innermost (per query tile, every head of the item);
#   HR (HR.patch): H, and all-causal items walk their query tiles last to first;
#   P  (P.patch): persistent backward (one block per SM, items from a ticket counter as the
#      forward's; the next item's K, V and first query tiles load during an item's end; dK/dV
#      staged in the dS^T buffers and the dQ staging; dQ conversions 4 float4s in flight, not 8);
#   PHR (PHR.patch): P with HR's walk (built, not in the default FORMS: only if both win).
# Added after the first two calls: HR2 (v35d), only all-causal items walking back; W (v35e's
# first form, the walk decided on the host) and W2 (v35e's final form, with a plain-walk kernel
# instance); bins.tar.xz now holds base, W2 (and the calls ran HR, H, P, W, HR2 from earlier ones).
# Two calls: `bash call1.sh` (tests, sanitizers, round 1) and, with the forms that passed,
# `CHECKS=0 ROUNDS=2 OK="base ..." bash call1.sh` (round 2 and the whole GPU path's check).
# Per form: gpu tests, and sanitizers for P (the walk orders change only which tile comes next); a
# form that fails them is left out of the timings. Then a round of the backward A/B (every form
# passed, alternated); in the second call, the whole GPU path's check with the first form listed.
set -u
S=build-gpu-carry/s30
OUT=${OUT:-out}
mkdir -p "$OUT"
(cd $S && tar xJf bins.tar.xz)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
LOG=$OUT/ab.log
t0=$(date +%s)
BUDGET=${BUDGET:-570}
left() { echo $((BUDGET - ($(date +%s) - t0))); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv; } >>"$LOG"
run() {
  local name=$1 lim=$2; shift 2
  local s=$(date +%s)
  timeout "$lim" "$@" >"$OUT/$name.out" 2>&1
  local rc=$?
  echo "$name rc=$rc $(($(date +%s) - s))s $(grep -E 'PASSED|FAILED|SUMMARY|problems|Error|error' "$OUT/$name.out" | tail -2 | tr '\n' ' ' | cut -c1-200)" | tee -a "$LOG"
  return $rc
}
FORMS=${FORMS:-HR H P}
if [ "${CHECKS:-1}" = 1 ]; then
OK="base"
for T in $FORMS; do
  good=1
  run tests_$T 150 $S/$T/test_kernels_cuda --gtest_brief=1 || good=0
  for tool in racecheck synccheck; do
    [ $good = 1 ] && [[ " ${SAN_FORMS:-P} " == *" $T "* ]] || break
    run ${tool}_$T 120 compute-sanitizer --tool $tool --error-exitcode 9 $S/$T/magi-bench kernel --config $S/sanb.json --out $OUT/sanb_${tool}_$T.json || good=0
  done
  [ $good = 1 ] && OK="$OK $T"
done
fi
echo "forms timed: $OK" | tee -a "$LOG"
for r in ${ROUNDS:-1}; do
  for v in $OK; do
    for c in kbg kba; do
      [ "$(left)" -gt 80 ] || break
      run ${c}_${v}_$r 120 $S/$v/magi-bench kernel --config $S/$c.json --out $OUT/${c}_${v}_$r.json
    done
  done
done
python3 $S/ab_b.py "$OUT" | tee -a "$LOG"
LAST=$(echo $OK | awk '{print $2}')
[ "${CHECKS:-1}" = 0 ] && [ "${MASKS:-1}" = 1 ] && [ -n "$LAST" ] && [ "$(left)" -gt 50 ] && run gpu_masks_$LAST 100 mpirun -np 4 --oversubscribe $S/$LAST/magi-bench --config configs/gpu_masks.json --backend gpu --comm mpi --check
echo "done at $(($(date +%s) - t0))s" | tee -a "$LOG"
(cd "$OUT" && tar cJf all.tar.xz --exclude=all.tar.xz --exclude=ab.log . && find . -type f ! -name all.tar.xz ! -name ab.log -delete)
