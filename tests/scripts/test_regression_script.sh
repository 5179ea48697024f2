#!/bin/sh
# scripts/regression.sh against a baseline with an injected regression (the forward bytes of one
# case changed): it must fail with exit 7 and a readable report naming the case and the metric,
# its timings measured against the given baseline binary (--base-bench, this one: the build of
# the baseline's commit is CI's job, too slow for a test); and against a baseline lacking a case
# and naming no clean commit, it must fail too (the suite checks less than it should) and say that
# its timings fall back to the committed file.
# Usage: test_regression_script.sh MAGI_BENCH REPO_ROOT
set -u
bench="$1"; root="$2"
command -v mpirun >/dev/null 2>&1 || { echo "SKIPPED: mpirun not found"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "SKIPPED: python3 not found"; exit 77; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/injected/cpu" "$tmp/short/cpu"
python3 - "$root/results/baselines/cpu/ci_regression.json" "$tmp" <<'PY'
import json, sys
base, tmp = sys.argv[1], sys.argv[2]
d = json.load(open(base))
# The new run will send 512 bytes more than this baseline says: a regression of the plan.
d["cases"][5]["planned_fwd_bytes"] -= 512
json.dump(d, open(f"{tmp}/injected/cpu/ci_regression.json", "w"))
d = json.load(open(base))
del d["cases"][3]
d["metadata"]["git_sha"] += "-dirty"
json.dump(d, open(f"{tmp}/short/cpu/ci_regression.json", "w"))
PY
"$root/scripts/regression.sh" --bench "$bench" --base-bench "$bench" --baseline-dir "$tmp/injected" --out "$tmp/out1" >"$tmp/log1" 2>&1
rc=$?
cat "$tmp/log1"
fail=0
[ "$rc" = 7 ] || { echo "FAIL: injected regression: exit $rc, expected 7"; fail=1; }
grep -q "planned_fwd_bytes .* REGRESSION" "$tmp/log1" || { echo "FAIL: the report does not name planned_fwd_bytes as a REGRESSION"; fail=1; }
grep -q "timings against the baseline's commit run on this machine" "$tmp/log1" || { echo "FAIL: timings not measured against --base-bench"; fail=1; }
[ -s "$tmp/out1/ci_regression.base.json" ] || { echo "FAIL: no results of the baseline binary"; fail=1; }
grep -q "regression: ci_regression FAILED" "$tmp/log1" || { echo "FAIL: no FAILED line"; fail=1; }
# --threshold 1000%: this part is about the cases and the fallback; no timing re-run.
"$root/scripts/regression.sh" --bench "$bench" --threshold 1000% --baseline-dir "$tmp/short" --out "$tmp/out2" >"$tmp/log2" 2>&1
rc=$?
cat "$tmp/log2"
[ "$rc" != 0 ] || { echo "FAIL: a baseline lacking a case passed"; fail=1; }
grep -q "Only in new (no baseline)" "$tmp/log2" || { echo "FAIL: the extra case is not listed"; fail=1; }
grep -q "names no clean commit" "$tmp/log2" || { echo "FAIL: no word on the baseline's dirty commit"; fail=1; }
grep -q "timings against the committed file" "$tmp/log2" || { echo "FAIL: no fallback to the committed timings"; fail=1; }
exit $fail
