#!/usr/bin/env bash
# A/B of changes to the CUDA kernel against the kernel before them, in one device call (issue 13's
# rule: correctness first, then all timed on the same card). Two modes:
#
#   bash scripts/gpu_ab.sh pack PATCH [PATCH...] DIR     (here, on a clean checkout with the CUDA
#       build tree `build` of scripts/setup.sh): builds base's magi-bench, then with each PATCH
#       applied alone the candidate's magi-bench and test_kernels_cuda, packs them into
#       DIR/bins.tar.xz (5 MB with one candidate, a carry instead of 30 MB) and reverts the patch,
#       rebuilding main's binaries at the end. A candidate is named after its patch file
#       (v49_x.diff: v49_x). With one candidate about 7 minutes on 2 cores (three builds of the
#       kernel); each further candidate adds its own build.
#   DIR=<dir> bash scripts/gpu_ab.sh run CONFIG...      (the device tool, carry [DIR]):
#       1. each candidate's gpu tests (test_kernels_cuda against the float64 CPU reference); a
#          candidate that fails them is not timed;
#       2. compute-sanitizer racecheck and synccheck on the edge cases (FlexAttentionGpu.EdgeCases);
#       3. every CONFIG (a workload JSON) timed unchecked in the order base, each candidate, base,
#          each candidate, each in its own process, then `magi-bench compare` at a 1% threshold of
#          base against each candidate in both rounds, and of base against base (the card's own
#          spread);
#       4. while the call's time lasts (TIME_LIMIT, default 540 s), each candidate on each of
#          $CHECK_CONFIGS (default configs/kernel_catalogue.json) with the check.
#       Several candidates in one call share the machine's start, base's timings and the card:
#       each further candidate adds about 85 s of tests and sanitizers and two passes of each
#       config.
# The log, $OUT/ab.log, is written as it goes and the results files are packed into
# $OUT/ab_results.tar.xz after each step, so a call cut short keeps what ran (set TIME_LIMIT under
# the call's own limit). Exit 0 when the tests passed, the sanitizers found nothing and every run
# succeeded; the timings are reported, not judged.
set -uo pipefail
MODE=${1:-}
shift || true
usage() { echo "usage: bash scripts/gpu_ab.sh pack PATCH [PATCH...] DIR | DIR=<dir> bash scripts/gpu_ab.sh run CONFIG..." >&2; exit 2; }

if [ "$MODE" = pack ]; then
  [ $# -ge 2 ] || usage
  DIR=$(realpath -m "${@: -1}")
  PATCHES=()
  for p in "${@:1:$#-1}"; do
    [ -f "$p" ] || { echo "gpu_ab.sh: patch $p not found" >&2; exit 2; }
    PATCHES+=("$(realpath "$p")")
  done
  NAMES=()  # NAMES[i]: the candidate of PATCHES[i]
  declare -A seen=()
  for p in "${PATCHES[@]}"; do
    c=$(basename "$p"); c=${c%.*}
    [[ "$c" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "gpu_ab.sh: patch $p: a candidate is named after its file, and '$c' is not a plain name" >&2; exit 2; }
    [ "$c" != base ] && [ -z "${seen[$c]:-}" ] || { echo "gpu_ab.sh: two candidates named $c (patch files name them)" >&2; exit 2; }
    seen[$c]=1
    NAMES+=("$c")
  done
  cd "$(git rev-parse --show-toplevel)" || exit 2
  git diff --quiet -- kernels || { echo "gpu_ab.sh: kernels/ has changes; pack on a clean checkout" >&2; exit 2; }
  for p in "${PATCHES[@]}"; do
    git apply --check "$p" || { echo "gpu_ab.sh: $p does not apply to this checkout" >&2; exit 2; }
  done
  [ -f build/build.ninja ] || bash scripts/setup.sh release || exit 1
  work=$(mktemp -d) applied=""
  trap '[ -n "$applied" ] && git apply -R "$applied"; rm -rf "$work"' EXIT
  mkdir -p "$DIR" "$work/base"
  cmake --build build -j "$(nproc)" --target magi-bench || exit 1
  cp build/magi-bench "$work/base/"
  for i in "${!PATCHES[@]}"; do
    p=${PATCHES[$i]} c=${NAMES[$i]}
    git apply "$p" || exit 1
    applied=$p
    mkdir -p "$work/$c"
    cmake --build build -j "$(nproc)" --target magi-bench test_kernels_cuda || exit 1
    cp build/magi-bench build/tests/kernels/cuda/test_kernels_cuda "$work/$c/"
    git apply -R "$p" || exit 1
    applied=""
  done
  (cd "$work" && tar cf - -- *) | xz -T0 -6 > "$DIR/bins.tar.xz"
  cmake --build build -j "$(nproc)" --target magi-bench test_kernels_cuda || exit 1  # main's binaries again
  echo "gpu_ab.sh: $DIR/bins.tar.xz ready ($(du -h "$DIR/bins.tar.xz" | cut -f1)): base and ${NAMES[*]}"
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
[ -x "$DIR/base/magi-bench" ] || [ ! -f "$DIR/bins.tar.xz" ] || tar xJf "$DIR/bins.tar.xz" -C "$DIR" \
  || { echo "gpu_ab.sh: cannot unpack $DIR/bins.tar.xz" >&2; exit 2; }
[ -x "$DIR/base/magi-bench" ] || { echo "gpu_ab.sh: $DIR/base/magi-bench not found (run pack first)" >&2; exit 2; }
CANDS=()
for d in "$DIR"/*/; do
  c=$(basename "$d")
  # A candidate: a folder of pack's with its two binaries (DIR may hold configs, OUT, anything else).
  [ "$c" != base ] && { [ -e "${d}magi-bench" ] || [ -e "${d}test_kernels_cuda" ]; } || continue
  for f in magi-bench test_kernels_cuda; do
    [ -x "$d$f" ] || { echo "gpu_ab.sh: $d$f not found (run pack first)" >&2; exit 2; }
  done
  CANDS+=("$c")
done
[ ${#CANDS[@]} -gt 0 ] || { echo "gpu_ab.sh: no candidate in $DIR (run pack first)" >&2; exit 2; }
LOG=$OUT/ab.log
RES=$(mktemp -d)
# Packed after each step, and swapped in whole, so a call cut short keeps what had finished.
pack_results() { tar cf - -C "$RES" . | xz -T0 -6 > "$OUT/ab_results.tar.xz.part" && mv "$OUT/ab_results.tar.xz.part" "$OUT/ab_results.tar.xz"; }
trap 'pack_results; rm -rf "$RES"' EXIT
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
say() { echo "$*" | tee -a "$LOG"; }
say "# $(date -u +%FT%TZ) host $(hostname) commit ${MAGI_COMMIT:-unknown} candidates ${CANDS[*]} configs $*"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv 2>&1 | tee -a "$LOG"

rc=0
TIMED=()
for c in "${CANDS[@]}"; do
  timeout 150 "$DIR/$c/test_kernels_cuda" --gtest_brief=1 > "$RES/${c}_gpu_tests.log" 2>&1
  t=$?
  say "# $c gpu tests: rc=$t $(grep -E '^\[  (PASSED|FAILED)' "$RES/${c}_gpu_tests.log" | tr '\n' ' ')at $(elapsed) s"
  if [ $t -ne 0 ]; then
    tail -40 "$RES/${c}_gpu_tests.log" | tee -a "$LOG"
    say "# $c: not timed (its tests failed)"
    rc=1
    continue
  fi
  TIMED+=("$c")
  for tool in racecheck synccheck; do
    timeout 120 compute-sanitizer --tool $tool "$DIR/$c/test_kernels_cuda" --gtest_filter=FlexAttentionGpu.EdgeCases \
      > "$RES/${c}_$tool.log" 2>&1
    t=$?
    say "# $c $tool: rc=$t $(grep -E 'SUMMARY' "$RES/${c}_$tool.log" | tail -1) at $(elapsed) s"
    # A hazard found leaves compute-sanitizer's exit at 0: its summary is what says.
    [ $t -eq 0 ] && grep -qE 'SUMMARY: 0 (errors|hazards)' "$RES/${c}_$tool.log" || { say "# $c $tool: FAILED"; rc=1; }
  done
  pack_results
done
[ ${#TIMED[@]} -gt 0 ] || exit 1

for cfg in "$@"; do
  name=$(basename "$cfg" .json)
  for round in 1 2; do
    for v in base "${TIMED[@]}"; do
      say "## $name $v (round $round) at $(elapsed) s"
      timeout 200 "$DIR/$v/magi-bench" kernel --config "$cfg" --no-check --out "$RES/${name}_$v$round.json" 2>&1 \
        | grep -E "^ *$name/[0-9]+ |rror" | tee -a "$LOG"
      t=${PIPESTATUS[0]}
      [ $t -eq 0 ] || { say "# $name $v: exit $t"; rc=1; }
    done
  done
  pairs=()
  for c in "${TIMED[@]}"; do pairs+=("base1 ${c}1" "base2 ${c}2"); done
  for pair in "${pairs[@]}" "base1 base2"; do
    read -r a b <<< "$pair"
    say "## compare $name: $a -> $b"
    "$DIR/${TIMED[0]}/magi-bench" compare "$RES/${name}_$a.json" "$RES/${name}_$b.json" --threshold 1% --fail-on exact 2>&1 \
      | grep -vE '^# (magi-bench compare$|Timings|Exact|Only|Note|base:|new:|Result:)' | tee -a "$LOG"
  done
  pack_results
done

for cfg in $CHECK_CONFIGS; do
  name=$(basename "$cfg" .json)
  for c in "${TIMED[@]}"; do
    left=$(( TIME_LIMIT - $(elapsed) ))
    [ $left -gt 60 ] || { say "# $name not checked on $c: $left s left"; continue; }
    say "## $name $c, checked, at $(elapsed) s"
    timeout $left "$DIR/$c/magi-bench" kernel --config "$cfg" --out "$RES/${name}_${c}_checked.json" 2>&1 \
      | grep -E "^ *$name/[0-9]+ |#wrong|rror" | tee -a "$LOG"
    t=${PIPESTATUS[0]}
    [ $t -eq 0 ] || { say "# $name $c: exit $t"; rc=1; }
    pack_results
  done
done
say "# done at $(elapsed) s"
exit $rc
