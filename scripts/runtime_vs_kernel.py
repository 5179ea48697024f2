#!/usr/bin/env python3
"""Sets `magi-bench run --backend gpu` results beside `magi-bench kernel` results of the same
workload file (issue 12's benchmark: the runtime at cp 1 against the bare kernel), and the
per-stage figures of a staged run against its one-stage rows. A stage count listed more than once
(the stage configs list their overlap degrees in palindromic order, auto 1 2 4 4 2 1 auto, so that
each degree and the one launch stand on average at the same place in the run: at the power cap a
case's place can move its time by 2-4%, results/runtime/NOTES.md) is taken as the geometric mean of
its rows' TFLOP/s.
Reads only the results schema (docs/results_schema.md).

Usage: runtime_vs_kernel.py --run RUN.json --kernel KERNEL.json [--stages STAGES.json]... [--out OUT.json]
Prints one table per comparison; --out writes the ratios as JSON (inputs named, nothing else)."""
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
    ap.add_argument("--run", required=True, help="magi-bench run results (cp 1)")
    ap.add_argument("--kernel", required=True, help="magi-bench kernel results, same workload")
    ap.add_argument("--stages", action="append", default=[],
                    help="magi-bench run results with overlap_degree auto, 1, 2, 4 (repeatable: "
                         "each file's rows against its own one-launch rows, in one table)")
    ap.add_argument("--out", help="write the ratios here as JSON")
    a = ap.parse_args()
    run, kernel = load(a.run), load(a.kernel)
    kernel_by = {(c["mask"], c["total_tokens"], c["head_dim"]): c for c in ran(kernel)}
    out = {"run": a.run, "kernel": a.kernel, "runtime_vs_kernel": [], "stages": []}
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
    if a.stages:
        print("\n# per-stage launches against one launch (same run), TFLOP/s")
        print(f"{'mask':>14} {'tokens':>8} {'stages':>6} {'runs':>4} {'fwd':>8} {'ratio':>6} {'bwd':>8} {'ratio':>6}")
    for path in a.stages:  # each file's rows against its own one-launch rows
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
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
