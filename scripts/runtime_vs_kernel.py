#!/usr/bin/env python3
"""Sets `magi-bench run --backend gpu` results beside `magi-bench kernel` results of the same
workload file (issue 12's benchmark: the runtime at cp 1 against the bare kernel), and the
per-stage figures of a staged run against its one-stage rows. A stage count listed more than once
(the stage configs list their overlap degrees in palindromic order, auto 1 2 4 4 2 1 auto, so that
each degree and the one launch stand on average at the same place in the run: at the power cap a
case's place can move its time by 2-4%, results/runtime/NOTES.md) is taken as the geometric mean of
its rows' TFLOP/s. Then issue 12's bars: the runtime at >= 0.97 of the kernel, each stage count at
>= 0.95 of the one launch (forward and backward); the ratios below them are listed (a verdict
printed, not the exit code: the comparison itself succeeded).
Reads only the results schema (docs/results_schema.md).

Usage: runtime_vs_kernel.py [--run RUN.json --kernel KERNEL.json] [--stages STAGES.json]...
                            [--min-run-ratio R] [--min-stage-ratio R] [--out OUT.json]
Prints one table per comparison given (the runtime against the kernel, the stages, or both) and the
misses; --out writes the ratios and the misses as JSON (inputs named, nothing else)."""
import argparse
import json
import math
import sys
from collections import defaultdict

SCHEMA = "magi-bench/results/1"


def load(path):
    with open(path) as f:
        r = json.load(f)
    if r.get("schema") != SCHEMA:
        sys.exit(f"{path}: schema {r.get('schema')!r}, expected {SCHEMA!r}")
    return r


def ran(report):
    return [c for c in report["cases"] if not c.get("skipped")]


def ratio(a, b):
    return a / b if a and b else None


def stage_count(c):  # cp 1: overlap_degree d cuts the keys into d + 1 stages (plan.h)
    return c["details"]["plan"]["overlap_degree"] + 1


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def fmt(x, spec="8.1f"):
    return format(x, spec) if x is not None else "       -"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="magi-bench run results (cp 1); with --kernel")
    ap.add_argument("--kernel", help="magi-bench kernel results, same workload as --run")
    ap.add_argument("--stages", action="append", default=[],
                    help="magi-bench run results with overlap_degree auto, 1, 2, 4 (repeatable: "
                         "each file's rows against its own one-launch rows, in one table)")
    ap.add_argument("--min-run-ratio", type=float, default=0.97,
                    help="the runtime's bar against the kernel (default 0.97, issue 12's)")
    ap.add_argument("--min-stage-ratio", type=float, default=0.95,
                    help="each stage count's bar against the one launch (default 0.95, issue 12's)")
    ap.add_argument("--out", help="write the ratios and the misses here as JSON")
    a = ap.parse_args()
    if (a.run is None) != (a.kernel is None):
        ap.error("--run and --kernel go together (the runtime's rows against the kernel's)")
    if a.run is None and not a.stages:
        ap.error("nothing to compare: give --run and --kernel, or --stages, or both")
    out = {"run": a.run, "kernel": a.kernel, "runtime_vs_kernel": [], "stages": [],
           "bars": {"run_vs_kernel": a.min_run_ratio, "stages_vs_one_launch": a.min_stage_ratio}}
    if a.run is not None:
        compare_runtime(load(a.run), load(a.kernel), out)
    if a.stages:
        compare_stages(a.stages, out)
    misses = out["misses"] = bar_misses(out, a.min_run_ratio, a.min_stage_ratio)
    print(f"\n# bars: runtime >= {a.min_run_ratio} of the kernel, stages >= {a.min_stage_ratio} of one launch: "
          + (f"missed by {len(misses)}" if misses else "met by every ratio"))
    for m in misses:
        print(f"  {m['mask']} {m['total_tokens']}, {m['what']}, {m['pass']} {m['ratio']:.3f} < {m['bar']}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


def bar_misses(out, run_bar, stage_bar):
    """The ratios below their bar: the runtime's against the kernel, each stage count's (not the
    one launch's own) against the one launch."""
    misses = []
    for r in out["runtime_vs_kernel"]:
        for p in ("fwd", "bwd"):
            if r[f"{p}_ratio"] is not None and r[f"{p}_ratio"] < run_bar:
                misses.append({"what": "runtime vs kernel", "mask": r["mask"], "total_tokens": r["total_tokens"],
                               "pass": p, "ratio": r[f"{p}_ratio"], "bar": run_bar})
    for r in out["stages"]:
        for p in ("fwd", "bwd"):
            if r["stages"] > 1 and r[f"{p}_ratio"] is not None and r[f"{p}_ratio"] < stage_bar:
                misses.append({"what": f"{r['stages']} stages vs one launch", "mask": r["mask"],
                               "total_tokens": r["total_tokens"], "pass": p, "ratio": r[f"{p}_ratio"],
                               "bar": stage_bar})
    return misses


def compare_runtime(run, kernel, out):
    kernel_by = {(c["mask"], c["total_tokens"], c["head_dim"]): c for c in ran(kernel)}
    print("# runtime (run --backend gpu, cp 1) against the bare kernel (magi-bench kernel), TFLOP/s")
    print(f"{'mask':>14} {'tokens':>8} {'kern_fwd':>8} {'run_fwd':>8} {'ratio':>6} "
          f"{'kern_bwd':>8} {'run_bwd':>8} {'ratio':>6}")
    for c in ran(run):
        k = kernel_by.get((c["mask"], c["total_tokens"], c["head_dim"]))
        if k is None:
            print(f"{c['mask']:>14} {c['total_tokens']:>8}  no kernel row")
            continue
        rf = ratio(c["fwd_tflops_per_gpu"], k["fwd_tflops_per_gpu"])
        rb = ratio(c["bwd_tflops_per_gpu"], k["bwd_tflops_per_gpu"])
        print(f"{c['mask']:>14} {c['total_tokens']:>8} {fmt(k['fwd_tflops_per_gpu'])} "
              f"{fmt(c['fwd_tflops_per_gpu'])} {fmt(rf, '6.3f')} {fmt(k['bwd_tflops_per_gpu'])} "
              f"{fmt(c['bwd_tflops_per_gpu'])} {fmt(rb, '6.3f')}")
        out["runtime_vs_kernel"].append({
            "mask": c["mask"], "total_tokens": c["total_tokens"],
            "kernel_fwd_tflops": k["fwd_tflops_per_gpu"], "run_fwd_tflops": c["fwd_tflops_per_gpu"],
            "fwd_ratio": rf, "kernel_bwd_tflops": k["bwd_tflops_per_gpu"],
            "run_bwd_tflops": c["bwd_tflops_per_gpu"], "bwd_ratio": rb})


def compare_stages(paths, out):
    if out["runtime_vs_kernel"]:
        print()
    print("# per-stage launches against one launch (same run), TFLOP/s")
    print(f"{'mask':>14} {'tokens':>8} {'stages':>6} {'runs':>4} {'fwd':>8} {'ratio':>6} {'bwd':>8} {'ratio':>6}")
    for path in paths:  # each file's rows against its own one-launch rows
        groups = defaultdict(list)  # (mask, tokens, stages) -> rows, in the file's order
        for c in ran(load(path)):
            groups[(c["mask"], c["total_tokens"], stage_count(c))].append(c)
        tflops = {k: (geomean([c["fwd_tflops_per_gpu"] for c in v]), geomean([c["bwd_tflops_per_gpu"] for c in v]))
                  for k, v in groups.items()}
        for (mask, tokens, n), v in groups.items():
            fwd, bwd = tflops[(mask, tokens, n)]
            base = tflops.get((mask, tokens, 1))
            rf = ratio(fwd, base[0]) if base else None
            rb = ratio(bwd, base[1]) if base else None
            print(f"{mask:>14} {tokens:>8} {n:>6} {len(v):>4} {fmt(fwd)} {fmt(rf, '6.3f')} {fmt(bwd)} {fmt(rb, '6.3f')}")
            out["stages"].append({"file": path, "mask": mask, "total_tokens": tokens, "stages": n, "runs": len(v),
                                  "fwd_tflops": fwd, "fwd_ratio": rf, "bwd_tflops": bwd, "bwd_ratio": rb})


if __name__ == "__main__":
    main()
