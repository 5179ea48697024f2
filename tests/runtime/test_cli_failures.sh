#!/bin/sh
# Failure behaviour of `mpirun -np N magi-bench` (label mpi):
#  1. a rank that throws (test hook MAGI_FAIL_RANK=2) takes the whole job down within seconds,
#     with its message and a non-zero exit (main() calls MPI_Abort with the error's exit code);
#  2. launching with fewer ranks than the workload's cp is a clear error before any collective;
#  3. a rank that stalls (MAGI_FAIL_RANK=1:stall, np 2) no longer leaves the other spinning
#     forever: under --timeout 2 the watchdog aborts the job within seconds, naming the rank, the
#     case and what it was waiting for.
# Usage: test_cli_failures.sh MAGI_BENCH CONFIG_DIR
set -u
bench="$1"; configs="$2"
here="$(cd "$(dirname "$0")" && pwd)"
run_mpi="$here/run_mpi.sh"
out="$(mktemp)"; cfg="$(mktemp --suffix=.json)"; trap 'rm -f "$out" "$cfg"' EXIT
fail=0

# Skip like the other mpi tests when there is no launcher.
"$run_mpi" 1 true >/dev/null 2>&1; rc=$?
if [ "$rc" = 77 ]; then echo "SKIPPED: mpirun not found"; exit 77; fi

now() { date +%s; }

echo "== a failing rank aborts the job (MAGI_FAIL_RANK=2, np 4)"
t0=$(now)
MAGI_FAIL_RANK=2 "$run_mpi" 4 "$bench" --backend cpu --config "$configs/mpi_slices.json" --check >"$out" 2>&1
rc=$?; dt=$(( $(now) - t0 ))
cat "$out" | head -20
echo "exit $rc after ${dt}s"
if [ "$rc" = 0 ]; then echo "FAIL: exit code 0"; fail=1; fi
if ! grep -q "injected failure on rank 2" "$out"; then echo "FAIL: the failing rank's message is missing"; fail=1; fi
if [ "$dt" -gt 20 ]; then echo "FAIL: took ${dt}s (> 20s)"; fail=1; fi

echo "== fewer ranks than cp (np 2, cp 4)"
t0=$(now)
"$run_mpi" 2 "$bench" --backend cpu --config "$configs/mpi_masks.json" --check >"$out" 2>&1
rc=$?; dt=$(( $(now) - t0 ))
cat "$out" | head -10
echo "exit $rc after ${dt}s"
if [ "$rc" = 0 ]; then echo "FAIL: exit code 0"; fail=1; fi
if ! grep -q "needs at least 4 MPI ranks" "$out"; then echo "FAIL: no clear message"; fail=1; fi
if grep -q "mpi_masks/0 " "$out"; then echo "FAIL: a case ran"; fail=1; fi

echo "== a stalled rank ends the job through the watchdog (MAGI_FAIL_RANK=1:stall, np 2, --timeout 2)"
cat >"$cfg" <<'EOF'
{"name": "stall", "model": {"heads_q": 2, "heads_kv": 2, "head_dim": 16},
 "sequence": {"total_tokens": 128}, "mask": {"type": "causal"},
 "parallel": {"cp": 2, "strategy": "magi", "chunk_tokens": 32},
 "run": {"warmup": 0, "iters": 2, "check": false}}
EOF
t0=$(now)
MAGI_FAIL_RANK=1:stall timeout 60 "$run_mpi" 2 "$bench" --backend cpu --config "$cfg" --timeout 2 >"$out" 2>&1
rc=$?; dt=$(( $(now) - t0 ))
cat "$out" | head -20
echo "exit $rc after ${dt}s"
if [ "$rc" = 0 ] || [ "$rc" = 124 ]; then echo "FAIL: exit code $rc"; fail=1; fi
expected="magi-bench: error on rank 0 of 2 .*: case stall/0: forward iteration 1 of 2: not done after 2.[0-9] s, waiting for barrier"
if ! grep -q "$expected" "$out"; then echo "FAIL: no message naming the rank, the case and the wait"; fail=1; fi
if ! grep -q "(--timeout 2)" "$out"; then echo "FAIL: the message does not name --timeout"; fail=1; fi
# Start-up under mpirun alone takes seconds on a loaded machine; a hang would run into timeout 60.
if [ "$dt" -gt 30 ]; then echo "FAIL: took ${dt}s (> 30s)"; fail=1; fi

[ "$fail" = 0 ] && echo "PASSED"
exit "$fail"
