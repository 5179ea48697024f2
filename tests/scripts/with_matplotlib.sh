#!/bin/sh
# with_matplotlib.sh SCRIPT.py ARGS... : runs SCRIPT.py with the first python3 that imports
# matplotlib (the one on PATH, else the distribution's /usr/bin/python3, where python3-matplotlib
# installs it), or skips (exit 77, ctest's SKIP_RETURN_CODE) saying what is missing.
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c "import matplotlib" >/dev/null 2>&1; then
    exec "$py" "$@"
  fi
done
echo "SKIPPED: no python3 here imports matplotlib; install the distribution's python3-matplotlib (scripts/setup.sh does)"
exit 77
