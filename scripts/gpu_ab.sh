#!/usr/bin/env bash
# A/B of a change to the CUDA kernel against the kernel before it, in one device call (issue 13's
# rule: correctness first, then both timed on the same card). Two modes:
#
#   bash scripts/gpu_ab.sh pack PATCH DIR     (here, on a clean checkout with the CUDA build tree
#       `build` of scripts/setup.sh): builds base's magi-bench, then with PATCH applied the
#       candidate's magi-bench and test_kernels_cuda, packs them into DIR/bins.tar.xz (a carry of
#       about 5 MB instead of 30) and reverts the patch, rebuilding main's binaries. Three builds of
#       the kernel: about 5 minutes on 2 cores once `build` exists.
#   DIR=<dir> bash scripts/gpu_ab.sh run CONFIG...      (the device tool, carry [DIR]):
#       1. the candidate's gpu tests (test_kernels_cuda against the float64 CPU reference); a
#          failure ends the call;
#       2. compute-sanitizer racecheck and synccheck on the edge cases (FlexAttentionGpu.EdgeCases);
#       3. every CONFIG (a workload JSON) timed unchecked in the order base, candidate, base,
#          candidate, each in its own process, then `magi-bench compare` on each pair (base /
#          candidate of both rounds, and base / base: the card's own spread) at a 1% threshold;
#       4. while the call's time lasts (TIME_LIMIT, default 540 s), the candidate on each of
#          $CHECK_CONFIGS (default configs/kernel_catalogue.json) with the check.
# The log, $OUT/ab.log, is written as it goes and the results files are packed into
# $OUT/ab_results.tar.xz after each step, so a call cut short keeps what ran (set TIME_LIMIT under
# the call's own limit). Exit 0 when the tests passed, the sanitizers found nothing and every run
# succeeded; the timings are reported, not judged.
set -uo pipefail
MODE=${1:-}
shift || true
usage() { echo "usage: bash scripts/gpu_ab.sh pack PATCH DIR | DIR=<dir> bash scripts/gpu_ab.sh run CONFIG..." >&2; exit 2; }

if [ "$MODE" = pack ]; then
  [ $# -eq 2 ] || usage
  PATCH=$(realpath "$1") DIR=$(realpath -m "$2")
  cd "$(git rev-parse --show-toplevel)" || exit 2
  [ -f "$PATCH" ] || { echo "gpu_ab.sh: patch $PATCH not found" >&2; exit 2; }
  git diff --quiet -- kernels || { echo "gpu_ab.sh: kernels/ has changes; pack on a clean checkout" >&2; exit 2; }
  git apply --check "$PATCH" || { echo "gpu_ab.sh: $PATCH does not apply to this checkout" >&2; exit 2; }
  [ -f build/build.ninja ] || bash scripts/setup.sh release || exit 1
  work=$(mktemp -d)
  trap 'git apply -R "$PATCH" 2>/dev/null; rm -rf "$work"' EXIT
  mkdir -p "$DIR" "$work/base" "$work/cand"
  cmake --build build -j "$(nproc)" --target magi-bench || exit 1
  cp build/magi-bench "$work/base/"
  git apply "$PATCH"
  cmake --build build -j "$(nproc)" --target magi-bench test_kernels_cuda || exit 1
  cp build/magi-bench build/tests/kernels/cuda/test_kernels_cuda "$work/cand/"
  tar cf - -C "$work" base cand | xz -T0 -6 > "$DIR/bins.tar.xz"
  git apply -R "$PATCH"
  trap 'rm -rf "$work"' EXIT
  cmake --build build -j "$(nproc)" --target magi-bench test_kernels_cuda || exit 1  # main's binaries again
  echo "gpu_ab.sh: $DIR/bins.tar.xz ready ($(du -h "$DIR/bins.tar.xz" | cut -f1))"
  exit 0
fi

[ "$MODE" = run ] && [ $# -ge 1 ] || usage
DIR=${DIR:-}
[ -n "$DIR" ] || { echo "gpu_ab.sh: set DIR to the folder pack wrote" >&2; exit 2; }
for cfg in "$@"; do [ -f "$cfg" ] || { echo "gpu_ab.sh: config $cfg not found" >&2; exit 2; }; done
OUT=${OUT:-ab-out}
TIME_LIMIT=${TIME_LIMIT:-540}
CHECK_CONFIGS=${CHECK_CONFIGS-configs/kernel_catalogue.json}
mkdir -p "$OUT"
[ -x "$DIR/cand/magi-bench" ] || tar xJf "$DIR/bins.tar.xz" -C "$DIR" || { echo "gpu_ab.sh: cannot unpack $DIR/bins.tar.xz" >&2; exit 2; }
for f in base/magi-bench cand/magi-bench cand/test_kernels_cuda; do
  [ -x "$DIR/$f" ] || { echo "gpu_ab.sh: $DIR/$f not found (run pack first)" >&2; exit 2; }
done
LOG=$OUT/ab.log
RES=$(mktemp -d)
# Packed after each step, and swapped in whole, so a call cut short keeps what had finished.
pack_results() { tar cf - -C "$RES" . | xz -T0 -6 > "$OUT/ab_results.tar.xz.part" && mv "$OUT/ab_results.tar.xz.part" "$OUT/ab_results.tar.xz"; }
trap 'pack_results; rm -rf "$RES"' EXIT
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
say() { echo "$*" | tee -a "$LOG"; }
say "# $(date -u +%FT%TZ) host $(hostname) commit ${MAGI_COMMIT:-unknown} configs $*"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv 2>&1 | tee -a "$LOG"

timeout 150 "$DIR/cand/test_kernels_cuda" --gtest_brief=1 > "$RES/gpu_tests.log" 2>&1
rc=$?
say "# candidate gpu tests: rc=$rc $(grep -E '^\[  (PASSED|FAILED)' "$RES/gpu_tests.log" | tr '\n' ' ')at $(elapsed) s"
[ $rc -eq 0 ] || { tail -40 "$RES/gpu_tests.log" | tee -a "$LOG"; exit 1; }
for tool in racecheck synccheck; do
  timeout 120 compute-sanitizer --tool $tool "$DIR/cand/test_kernels_cuda" --gtest_filter=FlexAttentionGpu.EdgeCases \
    > "$RES/$tool.log" 2>&1
  t=$?
  say "# candidate $tool: rc=$t $(grep -E 'SUMMARY' "$RES/$tool.log" | tail -1) at $(elapsed) s"
  # A hazard found leaves compute-sanitizer's exit at 0: its summary is what says.
  [ $t -eq 0 ] && grep -qE 'SUMMARY: 0 (errors|hazards)' "$RES/$tool.log" || { say "# candidate $tool: FAILED"; rc=1; }
done
pack_results

for cfg in "$@"; do
  name=$(basename "$cfg" .json)
  for round in 1 2; do
    for v in base cand; do
      say "## $name $v (round $round) at $(elapsed) s"
      timeout 200 "$DIR/$v/magi-bench" kernel --config "$cfg" --no-check --out "$RES/${name}_$v$round.json" 2>&1 \
        | grep -E "^ *$name/[0-9]+ |rror" | tee -a "$LOG"
      t=${PIPESTATUS[0]}
      [ $t -eq 0 ] || { say "# $name $v: exit $t"; rc=1; }
    done
  done
  for pair in "base1 cand1" "base2 cand2" "base1 base2"; do
    read -r a b <<< "$pair"
    say "## compare $name: $a -> $b"
    "$DIR/cand/magi-bench" compare "$RES/${name}_$a.json" "$RES/${name}_$b.json" --threshold 1% --fail-on exact 2>&1 \
      | grep -vE '^# (magi-bench compare$|Timings|Exact|Only|Note|base:|new:|Result:)' | tee -a "$LOG"
  done
  pack_results
done

for cfg in $CHECK_CONFIGS; do
  left=$(( TIME_LIMIT - $(elapsed) ))
  [ $left -gt 60 ] || { say "# $(basename "$cfg") not checked: $left s left"; continue; }
  name=$(basename "$cfg" .json)
  say "## $name candidate, checked, at $(elapsed) s"
  timeout $left "$DIR/cand/magi-bench" kernel --config "$cfg" --out "$RES/${name}_cand_checked.json" 2>&1 \
    | grep -E "^ *$name/[0-9]+ |#wrong|rror" | tee -a "$LOG"
  t=${PIPESTATUS[0]}
  [ $t -eq 0 ] || { say "# $name: exit $t"; rc=1; }
  pack_results
done
say "# done at $(elapsed) s"
exit $rc
