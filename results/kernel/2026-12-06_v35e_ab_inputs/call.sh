#!/usr/bin/env bash
# The device call of 2026-12-06 (results/kernel/NOTES.md, v35e's final form run), from the
# repository root: kernel v35e's final form (W2c: commit ed12817, built here) against base
# (c0a57b7's kernel, build-gpu-carry/s30/bins.tar.xz), backward A/B on kba.json (16:16) and
# kbg.json (64:8), ROUNDS rounds alternating; then the kernel record (scripts/gpu_kernel.sh quick:
# gpu tests and the four kernel configs with the check) of the form that holds: W2c when 64:8
# varlen causal 32k >= 1.04 of base and the 32k full and varlen sliding window cases >= 0.985,
# else base (main's kernel). Everything comes back in one tar.
set -u
S30=build-gpu-carry/s30
OUT=${OUT:-out}
mkdir -p "$OUT/ab" "$OUT/rec"
t0=$(date +%s)
OUT=$OUT/ab CHECKS=0 ROUNDS="${ROUNDS:-1 2}" OK="base W2c" MASKS=0 BUDGET=200 bash $S30/call1.sh >/dev/null 2>&1
python3 - "$OUT/ab/ab.log" > "$OUT/choice" <<'PY'
import re, sys
r = {}
for line in open(sys.argv[1]):
    m = re.match(r"\s*\('(\w+)', '(\w+)', (\d+), \d+, \d+\).*\| W2c [\d ]+ ([\d.]+)$", line.rstrip())
    if m: r[(m[1], m[2], int(m[3]))] = float(m[4])
need = {("kbg", "varlen_causal", 32768): 1.04}
for c in ("kba", "kbg"):
    for mk in ("full", "varlen_sliding_window"): need[(c, mk, 32768)] = 0.985
ok = all(k in r and r[k] >= v for k, v in need.items())
print("W2c ed12817" if ok else "base cb64dcc", {f"{k[0]} {k[1]}": r.get(k) for k in need})
PY
read FORM COMMIT _ < "$OUT/choice"
cat "$OUT/choice"
echo "a/b done at $(($(date +%s) - t0))s"
MAGI_COMMIT=$COMMIT BIN=$S30/$FORM OUT=$OUT/rec timeout $((${DEADLINE:-585} - ($(date +%s) - t0))) bash scripts/gpu_kernel.sh quick > "$OUT/rec/stdout.log" 2>&1
echo "record rc=$? done at $(($(date +%s) - t0))s"
grep -E "gpu tests|PASSED|FAILED|problem|Error" "$OUT/rec/run.log" | head
(cd "$OUT" && tar cJf all.tar.xz ab rec choice && rm -rf ab rec)
