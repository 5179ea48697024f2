#!/usr/bin/env bash
# The CPU-rank runs of the simulator's validation (docs/simulation.md), from the repository root:
#   bash results/simulation/cpu/run_all.sh [BIN]
# Each workload runs with as many ranks as its cp (np 4 oversubscribes the 2 cores). The five
# workloads run ROUNDS times (default 3), round after round, into r1/, r2/, ...: calibrate keeps
# each case's fastest repeat, so a burst of other load during one round does not become the model.
set -euo pipefail
BIN=${1:-build-cpu/magi-bench}
D=results/simulation/cpu
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
for round in $(seq 1 "${ROUNDS:-3}"); do
  mkdir -p "$D/r$round"
  for w in fit_cp1:1 fit_cp2:2 heldout_cp1:1 heldout_cp2:2 heldout_cp4:4; do
    name=${w%%:*}; np=${w##*:}
    "${MPIRUN[@]}" -np "$np" "$BIN" run --backend cpu --config "$D/$name.json" --out "$D/r$round/${name}_result.json" --force \
      > "$D/r$round/${name}_result.log"
  done
  echo "round $round done: $D/r$round"
done
