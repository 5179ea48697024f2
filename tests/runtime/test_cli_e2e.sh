#!/bin/sh
# MPI end-to-end suite (label mpi): `mpirun -np 4 magi-bench --backend cpu --config F --check`
# must exit 0, and its JSON report must show every case checked and passed with measured bytes
# equal to the plan's (check_report.py; skipped when python3 is absent).
# Usage: test_cli_e2e.sh MAGI_BENCH CONFIG.json MIN_CASES
set -u
bench="$1"; config="$2"; min_cases="$3"
here="$(cd "$(dirname "$0")" && pwd)"
report="$(mktemp -u).json"; trap 'rm -f "$report"' EXIT
"$here/run_mpi.sh" 4 "$bench" --backend cpu --config "$config" --check --out "$report"
rc=$?
[ "$rc" = 77 ] && exit 77
if [ "$rc" != 0 ]; then echo "FAIL: magi-bench exited $rc"; exit 1; fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 not found: report not inspected (run and check passed)"; exit 0
fi
python3 "$here/check_report.py" "$report" "$min_cases"
