#!/usr/bin/env bash
# The one script run on the GPU machine for the flexible CUDA attention kernel (issues 5 and 13):
#   1. the gpu tests (test_kernels_cuda: kernel vs the float64 CPU reference),
#   2. `magi-bench kernel` on configs/kernel_h100.json, kernel_h100_gqa.json and the rest of the
#      mask catalogue, kernel_catalogue.json and kernel_catalogue_gqa.json (with check; each
#      results file then read by tests/runtime/check_report.py),
#   3. the peers (PyTorch SDPA flash / cuDNN, FlexAttention) on the 32k d 128 cases of both head
#      layouts (issue 13's yardstick), same card, same run;
#   4. issue 13's floor judged on the record (scripts/kernel_floor.py; `--markdown` on the same
#      files prints the README's kernel table).
# Binaries come from $BIN: a folder holding magi-bench and test_kernels_cuda (default
# build-gpu-carry, what the device tool carries) or a CUDA build tree (BIN=build after
# scripts/setup.sh). Everything lands in $OUT (default ./kernel-out): at most 8 files.
# The whole run took 7-9 minutes on an H100 while a case's timed calls were only --iters of them
# (403 s for b4b4b0a's record, 515 s for 44a358b's); since they last at least 2 s (2e32e6d), each
# pass of each case, ours and the peers', takes about 2 s more, and the whole run no longer fits
# the device tool's 10-minute call (`quick` took 467 s on an H100 at b7da4cd): run it as two
# calls, `quick` then `peers`.
# Usage (device tool): bash scripts/gpu_kernel.sh [quick|peers]
#   quick: 1, 2 and 4 (tests, every config of ours, the floor; no peers);
#   peers: 3 with ours again on the cases the peers run (kernel_h100 and kernel_h100_gqa at 32k,
#          head dim 128, unchecked: `quick` checks them), so that the peers' ratios are against
#          ours measured in the same call; then the shares and ratios of those cases.
set -uo pipefail
BIN=${BIN:-build-gpu-carry}
OUT=${OUT:-kernel-out}
# magi-bench and test_kernels_cuda side by side (a carried folder), or as a build tree lays them out.
TESTS_BIN="$BIN/test_kernels_cuda"
[ -x "$TESTS_BIN" ] || TESTS_BIN="$BIN/tests/kernels/cuda/test_kernels_cuda"
for f in "$BIN/magi-bench" "$TESTS_BIN"; do
  [ -x "$f" ] || { echo "gpu_kernel.sh: $f not found (build with CUDA, then BIN=<build dir>)" >&2; exit 2; }
done
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONUNBUFFERED=1
LOG="$OUT/run.log"
{
  echo "# $(date -u +%FT%TZ) host $(hostname)"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv
  echo "# commit (of the tree sent): ${MAGI_COMMIT:-unknown}"
} | tee "$LOG"

MODE=${1:-all}
case "$MODE" in
  all|quick) CONFIGS="kernel_h100 kernel_h100_gqa kernel_catalogue kernel_catalogue_gqa" ;;
  peers) CONFIGS="kernel_h100 kernel_h100_gqa" ;;
  *) echo "gpu_kernel.sh: unknown mode '$MODE' (quick, peers or none)" >&2; exit 2 ;;
esac
rc=0
if [ "$MODE" != peers ]; then
  "$TESTS_BIN" --gtest_brief=1 > "$OUT/gpu_tests.log" 2>&1
  t=$?
  echo "# gpu tests: rc=$t ($(grep -c 'Failure' "$OUT/gpu_tests.log") failures)" | tee -a "$LOG"
  grep -E '^\[  (PASSED|FAILED)' "$OUT/gpu_tests.log" | tee -a "$LOG"
  [ $t -ne 0 ] && rc=1
fi

PEER_TOKENS=32768 PEER_HEAD_DIM=128
for cfg in $CONFIGS; do
  CFG="configs/$cfg.json" CHECK=()
  if [ "$MODE" = peers ]; then
    # The config cut to the peers' cases (same workload name, so the rows keep their labels).
    CFG=$(mktemp --suffix=.json) CHECK=(--no-check)
    python3 -c "import json, sys; c = json.load(open(sys.argv[1])); c['sequence']['total_tokens'] = $PEER_TOKENS; \
c['model']['head_dim'] = $PEER_HEAD_DIM; json.dump(c, open(sys.argv[2], 'w'))" "configs/$cfg.json" "$CFG"
  fi
  "$BIN/magi-bench" kernel --config "$CFG" "${CHECK[@]}" --out "$OUT/$cfg.json" 2>&1 | tee -a "$LOG"
  [ "${PIPESTATUS[0]}" -ne 0 ] && rc=1
  [ "$MODE" = peers ] && { rm -f "$CFG"; continue; }
  # The results file as every consumer reads it: schema tag, every case checked and passed.
  python3 tests/runtime/check_report.py "$OUT/$cfg.json" 2>&1 | tee -a "$LOG"
  [ "${PIPESTATUS[0]}" -ne 0 ] && rc=1
done

PEERS=()
if [ "$MODE" != quick ]; then
  for cfg in kernel_h100 kernel_h100_gqa; do
    python3 scripts/bench_kernel_peers.py "$OUT/$cfg.json" --out "$OUT/peers_${cfg#kernel_}.json" \
      --head-dim $PEER_HEAD_DIM --min-tokens $PEER_TOKENS --warmup 3 --iters 10 2>&1 | grep -v -e Warning -e create_block_mask | tee -a "$LOG"
    [ -f "$OUT/peers_${cfg#kernel_}.json" ] && PEERS+=(--peers "$OUT/peers_${cfg#kernel_}.json")
  done
fi
# Issue 13's floor on this record (a verdict, not the run's exit code: the run itself succeeded).
[ "$MODE" = peers ] && echo "# peers: the shares and misses below are of the peers' cases only; \`quick\` judges the record" | tee -a "$LOG"
FILES=()
for cfg in $CONFIGS; do FILES+=("$OUT/$cfg.json"); done
python3 scripts/kernel_floor.py "${FILES[@]}" "${PEERS[@]}" 2>&1 | tee -a "$LOG"
exit $rc
