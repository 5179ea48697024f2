#!/bin/sh
# scripts/gpu_ab.sh's run mode without a GPU: stand-ins for the two builds' magi-bench kernel (a
# committed kernel record's results, the candidate's timings 5% faster), for test_kernels_cuda,
# compute-sanitizer and nvidia-smi, with this build's magi-bench doing the comparisons. The log
# must carry both rounds' rows and a comparison per pair (the candidate an improvement, base
# against base not), the results must come back packed, also from a call killed mid-way, the
# checked run must be reported; a hazard the sanitizer reports must fail the call; a candidate
# whose tests fail must not be timed (another candidate of the same call still is), a missing
# build must end the call, and pack must refuse a missing patch and two patches of one name.
# Usage: test_gpu_ab_script.sh MAGI_BENCH REPO_ROOT
set -u
bench="$1"; root="$2"
command -v python3 >/dev/null 2>&1 || { echo "SKIPPED: python3 not found"; exit 77; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
record="$root/results/kernel/2026-12-07_s48_h200_record/kernel_h100.json.xz"
xz -dc "$record" > "$tmp/record.json" || { echo "FAIL: cannot read $record"; exit 1; }
mkdir -p "$tmp/ab/base" "$tmp/ab/cand" "$tmp/other" "$tmp/path" "$tmp/path2"
# magi-bench: `kernel ... --out F` writes the record's results with timings scaled by $SPEED and
# prints a row per case; `compare` is the real one.
for v in base:1.0 cand:1.05 other:1.10; do
  bin="$tmp/ab/${v%%:*}/magi-bench"
  [ "${v%%:*}" = other ] && bin="$tmp/other/magi-bench"
  cat > "$bin" <<EOF
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
cp "$tmp/ab/cand/test_kernels_cuda" "$tmp/other/test_kernels_cuda"
chmod +x "$tmp/ab/base/magi-bench" "$tmp/ab/cand/magi-bench" "$tmp/ab/cand/test_kernels_cuda" "$tmp/other/"* "$tmp/path/"*
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
grep -q "ab_fwd cand, checked" "$tmp/out/ab.log" || { echo "FAIL: the checked run is not reported"; fail=1; }
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
grep -q "cand racecheck: FAILED" "$tmp/out5/ab.log" || { echo "FAIL: the hazard is not reported"; fail=1; }
grep -q "## compare ab_fwd: base1 -> cand1" "$tmp/out5/ab.log" || { echo "FAIL: no timings after a hazard"; fail=1; }

# Two candidates in one call: base and both timed in each round, each compared with base (the
# results folder inside DIR is not taken for a third).
cp -r "$tmp/other" "$tmp/ab/other"
PATH="$tmp/path:$PATH" DIR="$tmp/ab" OUT="$tmp/ab/out6" CHECK_CONFIGS="" \
  bash scripts/gpu_ab.sh run "$tmp/ab_fwd.json" > /dev/null 2>&1
rc=$?
[ "$rc" = 0 ] || { echo "FAIL: two candidates: exit $rc"; fail=1; }
[ "$(grep -c '^## ab_fwd .* (round [12])' "$tmp/ab/out6/ab.log")" = 6 ] || { echo "FAIL: two candidates: not six timed runs"; fail=1; }
for pair in "base1 -> cand1" "base2 -> cand2" "base1 -> other1" "base2 -> other2" "base1 -> base2"; do
  grep -q "## compare ab_fwd: $pair" "$tmp/ab/out6/ab.log" || { echo "FAIL: two candidates: no comparison $pair"; fail=1; }
done
awk '/compare ab_fwd: base1 -> other1/{on=1} /compare ab_fwd: base2 -> other2/{on=0} on' "$tmp/ab/out6/ab.log" \
  | grep -q "Geomean new/base fwd_tflops_per_gpu : 1.10.*improvement" || { echo "FAIL: the second candidate not compared"; fail=1; }

# One of them fails its tests: it is not timed, the other is, and the call fails.
printf '#!/bin/sh\necho "[  FAILED  ] 1 test."\nexit 1\n' > "$tmp/ab/cand/test_kernels_cuda"
PATH="$tmp/path:$PATH" DIR="$tmp/ab" OUT="$tmp/out7" CHECK_CONFIGS="" \
  bash scripts/gpu_ab.sh run "$tmp/ab_fwd.json" > /dev/null 2>&1
rc=$?
[ "$rc" = 1 ] || { echo "FAIL: a candidate's failing tests: exit $rc, expected 1"; fail=1; }
grep -q "cand: not timed" "$tmp/out7/ab.log" || { echo "FAIL: the failing candidate not reported"; fail=1; }
grep -q "^## ab_fwd cand " "$tmp/out7/ab.log" && { echo "FAIL: the failing candidate was timed"; fail=1; }
grep -q "## compare ab_fwd: base1 -> other1" "$tmp/out7/ab.log" || { echo "FAIL: the passing candidate not timed"; fail=1; }
rm -r "$tmp/ab/other" "$tmp/ab/out6"

# The only candidate fails its tests: nothing is timed.
printf '#!/bin/sh\necho "[  FAILED  ] 1 test."\nexit 1\n' > "$tmp/ab/cand/test_kernels_cuda"
PATH="$tmp/path:$PATH" DIR="$tmp/ab" OUT="$tmp/out2" bash scripts/gpu_ab.sh run "$tmp/ab_fwd.json" > /dev/null 2>&1
rc=$?
[ "$rc" = 1 ] || { echo "FAIL: failing tests: exit $rc, expected 1"; fail=1; }
grep -q "^## " "$tmp/out2/ab.log" && { echo "FAIL: timed after the tests failed"; fail=1; }

rm "$tmp/ab/base/magi-bench"
DIR="$tmp/ab" OUT="$tmp/out3" bash scripts/gpu_ab.sh run "$tmp/ab_fwd.json" > "$tmp/err3" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "base/magi-bench not found" "$tmp/err3" || { echo "FAIL: missing build: exit $rc"; cat "$tmp/err3"; fail=1; }
# pack refuses a missing patch, and two patches that would name one candidate, before building.
bash scripts/gpu_ab.sh pack "$tmp/missing.diff" "$tmp/packed" > "$tmp/err4" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "missing.diff not found" "$tmp/err4" || { echo "FAIL: pack of a missing patch: exit $rc"; cat "$tmp/err4"; fail=1; }
mkdir -p "$tmp/p1" "$tmp/p2"
: > "$tmp/p1/v.diff"; : > "$tmp/p2/v.diff"
bash scripts/gpu_ab.sh pack "$tmp/p1/v.diff" "$tmp/p2/v.diff" "$tmp/packed" > "$tmp/err5" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "two candidates named v" "$tmp/err5" || { echo "FAIL: pack of two patches named v: exit $rc"; cat "$tmp/err5"; fail=1; }
[ -e "$tmp/packed" ] && { echo "FAIL: pack wrote its folder before refusing"; fail=1; }
[ "$fail" = 0 ] && echo "gpu_ab.sh: all checks passed"
exit "$fail"
