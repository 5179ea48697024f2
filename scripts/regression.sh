#!/usr/bin/env bash
# The CI regression suite (docs/compare.md): runs every workload of configs/ci/ and compares its
# results with the committed baseline results/baselines/<backend>/<workload>.json through
# `magi-bench compare`: exact metrics (bytes, area, imbalance, the check) must be equal; timings
# get noise-aware verdicts. .ci/run runs it after the tests.
#
#   scripts/regression.sh [--backend cpu] [--threshold PCT] [--take-baseline [--force]]
#                         [--out DIR] [--baseline-dir DIR]
#
# --backend B       the run's backend, and the baseline folder (default cpu; GPU machines take
#                   and compare their own: --backend cuda once the distributed CUDA backend exists)
# --threshold PCT   smallest timing change that counts (default: 100% on cpu, 5% otherwise)
# --take-baseline   run the suite and write it as the baseline instead of comparing (refuses to
#                   replace one unless --force); commit the files it writes
# --out DIR         keep the results and the verdicts (JSON) there (default: a temporary folder)
# --baseline-dir D  baselines other than results/baselines (tests)
#
# Why CPU CI does not flake: exact metrics are deterministic; a timing fails only when it is
# worse than the threshold (100% on CPU: CI machines are shared, and load swings of tens of
# percent between runs were measured, docs/compare.md) AND a rank test over the 10 timed
# iterations says the change is not the runs' own spread; and a failing timing comparison is
# measured once more, failing only if the regression is found again.
# Exit: 0 no regression; 7 a regression (or an exact metric changed); 2 usage; other: a failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
backend=cpu
threshold=""
take=0
force=0
out=""
baselines="$root/results/baselines"
while (($#)); do
  case "$1" in
    --backend) backend="$2"; shift 2 ;;
    --threshold) threshold="$2"; shift 2 ;;
    --take-baseline) take=1; shift ;;
    --force) force=1; shift ;;
    --out) out="$2"; shift 2 ;;
    --baseline-dir) baselines="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "regression: unknown argument '$1' (--help)" >&2; exit 2 ;;
  esac
done
[ -n "$threshold" ] || { [ "$backend" = cpu ] && threshold=100% || threshold=5%; }

# shellcheck source=setup.sh
source "$here/setup.sh" "${MAGI_PRESET:-release}"
bench="$(magi_build_dir)/magi-bench"
tmp_out=0
if [ -z "$out" ]; then
  out="$(mktemp -d)"
  tmp_out=1
fi
mkdir -p "$out"

# Runs workload $1 into $2 (results JSON), on as many ranks as it needs, one thread each so that
# ranks do not compete for cores; every step bounded by magi-bench's watchdog (--timeout).
run_suite_workload() {
  local cfg="$1" json="$2" np rc=0
  np="$("$bench" run --config "$cfg" --ranks-needed)"
  rm -f "$json"
  magi_mpirun -np "$np" "$bench" run --backend "$backend" --config "$cfg" --threads 1 --timeout 120 \
    --out "$json" >"$json.log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    cat "$json.log"
    echo "regression: magi-bench run failed on $cfg (exit $rc)" >&2
    exit 1
  fi
}

status=0
shopt -s nullglob
configs=("$root"/configs/ci/*.json)
((${#configs[@]})) || { echo "regression: no workload in configs/ci" >&2; exit 1; }
for cfg in "${configs[@]}"; do
  name="$(basename "$cfg" .json)"
  base="$baselines/$backend/$name.json"
  new="$out/$name.json"
  if ((take)); then
    if [ -e "$base" ] && ((!force)); then
      echo "regression: $base exists; --force replaces it" >&2; exit 2
    fi
    run_suite_workload "$cfg" "$new"
    mkdir -p "$(dirname "$base")"
    cp "$new" "$base"
    echo "regression: baseline for $backend written to $base (commit it)"
    continue
  fi
  if [ ! -f "$base" ]; then
    echo "regression: no baseline $base for backend $backend; take one on this machine class with" \
         "scripts/regression.sh --backend $backend --take-baseline, and commit it" >&2
    exit 1
  fi
  echo "regression: $name ($backend) against $base, timing threshold $threshold"
  run_suite_workload "$cfg" "$new"
  rc=0
  "$bench" compare "$base" "$new" --threshold "$threshold" --json "$out/$name.compare.json" --force || rc=$?
  if [ "$rc" = 7 ]; then
    echo "regression: $name regressed; measuring once more before failing (timings of a shared machine swing)"
    run_suite_workload "$cfg" "$new"
    rc=0
    "$bench" compare "$base" "$new" --threshold "$threshold" --json "$out/$name.compare.json" --force || rc=$?
    [ "$rc" = 0 ] && echo "regression: $name: the second run shows no regression; the first was noise"
  fi
  if [ "$rc" != 0 ]; then
    echo "regression: $name FAILED (compare exit $rc; verdicts in $out/$name.compare.json)"
    [ "$status" = 0 ] && status=$rc
  fi
done
if ((tmp_out)) && [ "$status" = 0 ]; then rm -rf "$out"; else echo "regression: results and verdicts kept in $out"; fi
exit "$status"
