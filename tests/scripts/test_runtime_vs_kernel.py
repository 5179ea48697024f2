#!/usr/bin/env python3
"""scripts/runtime_vs_kernel.py on made-up results: the runtime rows against the kernel rows of the
same case; a stage count listed twice (the stage configs' palindromic order) taken as the
geometric mean of its rows, against the one launch's mean; a mask without a one-launch row has no
ratio; issue 12's bars (runtime >= 0.97 of the kernel, stages >= 0.95 of one launch, or the ones
given) and the ratios below them; the stages alone, without --run and --kernel; --run without
--kernel refused; a file without the results schema is refused, named.
Usage: test_runtime_vs_kernel.py REPO_ROOT"""
import json
import math
import os
import subprocess
import sys
import tempfile

ROOT = sys.argv[1]
SCRIPT = os.path.join(ROOT, "scripts", "runtime_vs_kernel.py")
SCHEMA = "magi-bench/results/1"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def case(mask, fwd, bwd, degree=0, tokens=32768):
    return {"mask": mask, "total_tokens": tokens, "head_dim": 128, "fwd_tflops_per_gpu": fwd,
            "bwd_tflops_per_gpu": bwd, "details": {"plan": {"overlap_degree": degree}}}


def report(cases, schema=SCHEMA):
    return {"schema": schema, "cases": cases}


def run(tmp, files, stages, extra=()):
    paths = {}
    for name, r in files.items():
        paths[name] = os.path.join(tmp, name + ".json")
        json.dump(r, open(paths[name], "w"))
    out = os.path.join(tmp, "out.json")
    if os.path.exists(out):
        os.remove(out)
    args = [sys.executable, SCRIPT, "--out", out, *extra]
    for name in ("run", "kernel"):
        if name in paths:
            args += ["--" + name, paths[name]]
    for s in stages:
        args += ["--stages", paths[s]]
    p = subprocess.run(args, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr, (json.load(open(out)) if p.returncode == 0 else None)


with tempfile.TemporaryDirectory() as tmp:
    base = {"run": report([case("causal", 500.0, 400.0)]), "kernel": report([case("causal", 520.0, 400.0)])}
    # auto 1 4 4 1 auto on causal: the one launch at 100 and 121 (mean 110), 2 stages at 99 twice,
    # 5 stages at 88 and 110 (mean 98.387); varlen causal has no one-launch row.
    staged = report([case("causal", 100.0, 200.0), case("causal", 99.0, 180.0, 1), case("causal", 88.0, 150.0, 4),
                     case("causal", 110.0, 150.0, 4), case("causal", 99.0, 220.0, 1), case("causal", 121.0, 200.0),
                     case("varlen_causal", 50.0, 40.0, 1)])
    rc, text, out = run(tmp, dict(base, staged=staged), ["staged"])
    check(rc == 0, f"exit {rc}: {text}")
    if out:
        rk = out["runtime_vs_kernel"]
        check(len(rk) == 1 and abs(rk[0]["fwd_ratio"] - 500 / 520) < 1e-9, f"runtime against kernel: {rk}")
        st = {(r["mask"], r["stages"]): r for r in out["stages"]}
        check(set(st) == {("causal", 1), ("causal", 2), ("causal", 5), ("varlen_causal", 2)}, f"stage rows: {sorted(st)}")
        one = st.get(("causal", 1), {})
        check(one.get("runs") == 2 and abs(one.get("fwd_ratio", 0) - 1) < 1e-12, f"one launch: {one}")
        two = st.get(("causal", 2), {})
        check(two.get("runs") == 2 and abs(two.get("fwd_ratio", 0) - 0.9) < 1e-9 and abs(two.get("bwd_ratio", 0) - math.sqrt(180 * 220) / 200) < 1e-9,
              f"2 stages against the one launch's mean: {two}")
        five = st.get(("causal", 5), {})
        check(abs(five.get("fwd_ratio", 0) - math.sqrt(88 * 110) / 110) < 1e-9 and abs(five.get("bwd_ratio", 0) - 0.75) < 1e-9,
              f"5 stages, geometric mean of its rows: {five}")
        lone = st.get(("varlen_causal", 2), {})
        check(lone.get("fwd_ratio", 0) is None and lone.get("runs") == 1, f"no one-launch row, no ratio: {lone}")
        check("   2 " in text, f"the table shows the rows per stage count:\n{text}")
        # Default bars 0.97 and 0.95: the runtime's forward (0.9615), 2 stages' forward (0.9; its
        # backward, 0.995, passes) and both passes of 5 stages (0.8944, 0.75) miss; the one launch
        # is never judged.
        got = sorted((m["what"], m["pass"]) for m in out["misses"])
        want = sorted([("runtime vs kernel", "fwd"), ("2 stages vs one launch", "fwd"),
                       ("5 stages vs one launch", "fwd"), ("5 stages vs one launch", "bwd")])
        check(got == want, f"misses at the default bars: {got}")
        check(out["bars"] == {"run_vs_kernel": 0.97, "stages_vs_one_launch": 0.95}, f"bars: {out['bars']}")
        check("missed by 4" in text and "5 stages vs one launch, bwd 0.750 < 0.95" in text, f"the misses printed:\n{text}")

    rc, text, out = run(tmp, dict(base, staged=staged), ["staged"], ["--min-run-ratio", "0.9", "--min-stage-ratio", "0.7"])
    check(rc == 0 and out is not None and out["misses"] == [] and "met by every ratio" in text,
          f"lower bars met (exit {rc}): {text}")

    rc, text, out = run(tmp, {"staged": staged}, ["staged"])
    check(rc == 0 and out is not None and out["runtime_vs_kernel"] == [] and len(out["stages"]) == 4
          and "against the bare kernel" not in text, f"the stages alone (exit {rc}): {text}")

    rc, text, _ = run(tmp, {"run": base["run"]}, [])
    check(rc != 0 and "--run and --kernel go together" in text, f"--run without --kernel refused (exit {rc}): {text}")

    rc, text, _ = run(tmp, dict(base, staged=report([], schema="other/1")), ["staged"])
    check(rc != 0 and "staged.json" in text and "other/1" in text, f"a file of another schema refused, named (exit {rc}): {text}")

print("runtime_vs_kernel:", "FAILED" if failures else "OK")
sys.exit(1 if failures else 0)
