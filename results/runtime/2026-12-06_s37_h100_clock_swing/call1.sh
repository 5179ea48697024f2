#!/usr/bin/env bash
# Prepared in session 36, not yet run: issue 12's whole GPU path (scripts/gpu_runtime.sh) at 6fa581d,
# the first with `run`'s GPU warm-up of at least 1 s (e783737), so that the runtime / kernel ratios
# compare the same capped clocks (01b693a's run had 1.01-1.15: `run` timed in the transient).
# Carry build-gpu-carry/s37 (binaries stripped, about 3 MB xz); run `OUT=$OUT bash build-gpu-carry/s37/call1.sh`
# (about 470 s); everything comes back as one archive.
set -u
S=build-gpu-carry/s37
[ -x $S/bin/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
timeout 520 env OUT=/tmp/r BIN=$S/bin STEP_LIMIT=250 MAGI_COMMIT=6fa581d bash scripts/gpu_runtime.sh > /tmp/stdout.log 2>&1
echo "gpu_runtime rc=$?"
cp /tmp/stdout.log /tmp/r/stdout.log
grep '^#' /tmp/r/run.log; tail -30 /tmp/r/compare.log 2>/dev/null
(cd /tmp/r && tar cJf "$OUT/r.tar.xz" .)
