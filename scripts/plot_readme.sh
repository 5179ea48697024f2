#!/usr/bin/env bash
# Redraws the README's pictures (docs/img/) from committed results with scripts/plot_results.py.
# Uses the first python3 that imports matplotlib (PATH's, else the distribution's /usr/bin/python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c "import matplotlib" >/dev/null 2>&1; then py="$p"; break; fi
done
[ -n "$py" ] || { echo "plot_readme: no python3 imports matplotlib; install python3-matplotlib (scripts/setup.sh does)" >&2; exit 1; }
cpu="$root/results/cpu/2026-12-02_cpu_scaling.json"
plot="$root/scripts/plot_results.py"
"$py" "$plot" scaling "$cpu" --out "$root/docs/img/scaling"
"$py" "$plot" mask "$cpu" --case cpu_scaling/8 --out "$root/docs/img/mask"
"$py" "$plot" timeline "$cpu" --case cpu_scaling/9 --out "$root/docs/img/timeline"
"$py" "$plot" kernel "$root/results/kernel/2026-12-04_v25_h200_peers.json" --out "$root/docs/img/kernel"
