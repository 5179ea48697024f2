#!/bin/sh
# scripts/gpu_ab.sh's run mode without a GPU: stand-ins for the two builds' magi-bench kernel (a
# committed kernel record's results, the candidate's timings 5% faster), for test_kernels_cuda,
# compute-sanitizer and nvidia-smi, with this build's magi-bench doing the comparisons. The log
# must carry both rounds' rows and a comparison per pair (the candidate an improvement, base
# against base not), the results must come back packed, also from a call killed mid-way, the
# checked run must be reported; a hazard the sanitizer reports must fail the call; and a candidate
# whose tests fail must end the call before any timing, as a missing build must.
# Usage: test_gpu_ab_script.sh MAGI_BENCH REPO_ROOT
set -u
bench="$1"; root="$2"
command -v python3 >/dev/null 2>&1 || { echo "SKIPPED: python3 not found"; exit 77; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
record="$root/results/kernel/2026-12-07_s48_h200_record/kernel_h100.json.xz"
xz -dc "$record" > "$tmp/record.json" || { echo "FAIL: cannot read $record"; exit 1; }
mkdir -p "$tmp/ab/base" "$tmp/ab/cand" "$tmp/path" "$tmp/path2"
# magi-bench: `kernel ... --out F` writes the record's results with timings scaled by $SPEED and
# prints a row per case; `compare` is the real one.
for v in base:1.0 cand:1.05; do
  cat > "$tmp/ab/${v%%:*}/magi-bench" <<EOF
#!/bin/sh
[ "\$1" = compare ] && exec "$bench" "\$@"
out=""; cfg=""
while [ \$# -gt 0 ]; do
  case "\$1" in --out) out="\$2"; shift ;; --config) cfg="\$2"; shift ;; esac
  shift
done
# The second config of the cut-short call: the call is killed as the device tool's limit would.
[ "\$(basename "\$cfg")" = cut.json ] && { kill -KILL "\$(cat "$tmp/pid")"; exit 1; }
python3 - "$tmp/record.json" "\$out" "\$cfg" ${v#*:} <<'PY'
import json, os, sys
src, out, cfg, speed = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
d = json.load(open(src))
name = os.path.basename(cfg)[:-len(".json")]
for c in d["cases"]:
    for p in ("fwd", "bwd"):
        for k in (f"{p}_tflops_per_gpu", f"{p}_tflops_per_gpu_mean_rank"):
            c[k] *= speed
        for k in (f"{p}_ms", f"{p}_ms_mean_rank"):
            c[k] /= speed
        for r in c["ranks"]:
            t = r[p]
            for k in ("max_ms", "mean_ms", "median_ms", "min_ms"):
                t[k] /= speed
            t["samples_ms"] = [s / speed for s in t["samples_ms"]]
    print(f"  {c['case'].replace('kernel_h100', name)} {c['mask']} {c['fwd_tflops_per_gpu']:.1f}")
print("# Cases: checked 0, #wrong 0")
json.dump(d, open(out, "w"))
PY
EOF
done
printf '#!/bin/sh\necho "[  PASSED  ] 10 tests."\n' > "$tmp/ab/cand/test_kernels_cuda"
printf '#!/bin/sh\necho "========= ERROR SUMMARY: 0 errors"\n' > "$tmp/path/compute-sanitizer"
printf '#!/bin/sh\necho "name, driver_version"\necho "stand-in GPU, 0"\n' > "$tmp/path/nvidia-smi"
chmod +x "$tmp/ab/base/magi-bench" "$tmp/ab/cand/magi-bench" "$tmp/ab/cand/test_kernels_cuda" "$tmp/path/"*
cp "$root/configs/kernel_h100.json" "$tmp/ab_fwd.json"
cd "$root" || exit 1
fail=0

PATH="$tmp/path:$PATH" DIR="$tmp/ab" OUT="$tmp/out" CHECK_CONFIGS="$tmp/ab_fwd.json" \
  bash scripts/gpu_ab.sh run "$tmp/ab_fwd.json" > "$tmp/stdout" 2>&1
rc=$?
cat "$tmp/out/ab.log"
[ "$rc" = 0 ] || { echo "FAIL: run exited $rc"; cat "$tmp/stdout"; fail=1; }
[ "$(grep -c '^## ab_fwd .* (round [12])' "$tmp/out/ab.log")" = 4 ] || { echo "FAIL: not four timed runs"; fail=1; }
grep -q "ab_fwd/0 " "$tmp/out/ab.log" || { echo "FAIL: no case rows in the log"; fail=1; }
for pair in "base1 -> cand1" "base2 -> cand2" "base1 -> base2"; do
  grep -q "## compare ab_fwd: $pair" "$tmp/out/ab.log" || { echo "FAIL: no comparison $pair"; fail=1; }
done
awk '/compare ab_fwd: base1 -> cand1/{on=1} /compare ab_fwd: base2 -> cand2/{on=0} on' "$tmp/out/ab.log" \
  | grep -q "Geomean new/base fwd_tflops_per_gpu : 1.05.*improvement" || { echo "FAIL: the candidate not an improvement"; fail=1; }
awk '/compare ab_fwd: base1 -> base2/{on=1} /candidate, checked/{on=0} on' "$tmp/out/ab.log" \
  | grep -q "Geomean new/base fwd_tflops_per_gpu : 1.0000 .*unchanged" || { echo "FAIL: base against itself reads as a change"; fail=1; }
grep -q "ab_fwd candidate, checked" "$tmp/out/ab.log" || { echo "FAIL: the checked run is not reported"; fail=1; }
tar tJf "$tmp/out/ab_results.tar.xz" | grep -q "ab_fwd_cand2.json" || { echo "FAIL: results not packed"; fail=1; }

# Killed while timing its second config, the call keeps the first one's results.
cp "$tmp/ab_fwd.json" "$tmp/cut.json"
PATH="$tmp/path:$PATH" DIR="$tmp/ab" OUT="$tmp/out4" CHECK_CONFIGS="" \
  bash scripts/gpu_ab.sh run "$tmp/ab_fwd.json" "$tmp/cut.json" > /dev/null 2>&1 &
echo $! > "$tmp/pid"
wait $!
rc=$?
[ "$rc" = 137 ] || { echo "FAIL: the cut-short call: exit $rc, expected 137 (killed)"; fail=1; }
tar tJf "$tmp/out4/ab_results.tar.xz" 2>/dev/null | grep -q "ab_fwd_cand2.json" || { echo "FAIL: a call cut short lost its results"; fail=1; }

# A hazard that racecheck reports (its exit 0) fails the call, after the timings.
printf '#!/bin/sh\necho "========= RACECHECK SUMMARY: 3 hazards displayed (3 errors, 0 warnings)"\n' > "$tmp/path2/compute-sanitizer"
chmod +x "$tmp/path2/compute-sanitizer"
PATH="$tmp/path2:$tmp/path:$PATH" DIR="$tmp/ab" OUT="$tmp/out5" CHECK_CONFIGS="" \
  bash scripts/gpu_ab.sh run "$tmp/ab_fwd.json" > /dev/null 2>&1
rc=$?
[ "$rc" = 1 ] || { echo "FAIL: a racecheck hazard: exit $rc, expected 1"; fail=1; }
grep -q "candidate racecheck: FAILED" "$tmp/out5/ab.log" || { echo "FAIL: the hazard is not reported"; fail=1; }
grep -q "## compare ab_fwd: base1 -> cand1" "$tmp/out5/ab.log" || { echo "FAIL: no timings after a hazard"; fail=1; }

printf '#!/bin/sh\necho "[  FAILED  ] 1 test."\nexit 1\n' > "$tmp/ab/cand/test_kernels_cuda"
PATH="$tmp/path:$PATH" DIR="$tmp/ab" OUT="$tmp/out2" bash scripts/gpu_ab.sh run "$tmp/ab_fwd.json" > /dev/null 2>&1
rc=$?
[ "$rc" = 1 ] || { echo "FAIL: failing tests: exit $rc, expected 1"; fail=1; }
grep -q "^## " "$tmp/out2/ab.log" && { echo "FAIL: timed after the tests failed"; fail=1; }

rm "$tmp/ab/base/magi-bench"
DIR="$tmp/ab" OUT="$tmp/out3" bash scripts/gpu_ab.sh run "$tmp/ab_fwd.json" > "$tmp/err3" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "base/magi-bench not found" "$tmp/err3" || { echo "FAIL: missing build: exit $rc"; cat "$tmp/err3"; fail=1; }
[ "$fail" = 0 ] && echo "gpu_ab.sh: all checks passed"
exit "$fail"
