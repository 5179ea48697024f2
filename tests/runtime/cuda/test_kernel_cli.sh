#!/bin/sh
# `magi-bench kernel` with the check (label gpu): it must exit 0, print every case's row once, in
# the workload's order (rows of checked cases wait until every case is timed, skipped rows wait
# behind them), each case that ran marked OK; and its JSON must show every case checked and passed
# (check_report.py; skipped when python3 is absent). Skips with a message where no GPU is visible.
# Usage: test_kernel_cli.sh MAGI_BENCH CONFIG.json CASES (the cases the config sweeps)
set -u
bench="$1"; config="$2"; cases="$3"
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "SKIPPED: no GPU visible (nvidia-smi -L lists none); this test runs the CUDA kernel"
  exit 77
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$bench" kernel --config "$config" --out "$tmp/report.json" > "$tmp/stdout" 2> "$tmp/stderr"
rc=$?
cat "$tmp/stdout" "$tmp/stderr"
if [ "$rc" != 0 ]; then echo "FAIL: magi-bench kernel exited $rc"; exit 1; fi
name=$(sed -n 's/^ *"name": *"\([^"]*\)".*/\1/p' "$config" | head -1)
# The rows' case names as printed, against 0 .. CASES-1 in order.
printed=$(grep -o "^ *$name/[0-9]*" "$tmp/stdout" | sed 's/.*\///' | tr '\n' ' ')
want=$(seq 0 $((cases - 1)) | tr '\n' ' ')
if [ "$printed" != "$want" ]; then echo "FAIL: rows printed for cases [$printed], expected [$want]"; exit 1; fi
checked=$(grep -c "^ *$name/[0-9]* .* OK$" "$tmp/stdout")
timed=$(grep -c "^progress: case [0-9]*/$cases ($name/[0-9]*) timed" "$tmp/stderr")
if [ "$checked" = 0 ] || [ "$checked" != "$timed" ]; then
  echo "FAIL: $checked rows marked OK, $timed cases timed before their check"; exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 not found: report not inspected (run and check passed)"; exit 0
fi
python3 "$here/check_report.py" "$tmp/report.json" "$checked"
