#!/usr/bin/env python3
"""scripts/plot_results.py on the committed results: every picture is written as well-formed SVG
(and a PNG), and the SVG holds every series the results file has (each plotted series carries the
id series-<name>). Usage: test_plot_results.py REPO_ROOT"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = sys.argv[1]
SCRIPT = os.path.join(ROOT, "scripts", "plot_results.py")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def plot(*args, expect_ok=True):
    p = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
    if expect_ok and p.returncode != 0:
        failures.append(f"plot_results {' '.join(args)} exited {p.returncode}: {p.stderr}")
        print(failures[-1])
    return p


def svg_ids(prefix):
    """Ids of the SVG's elements; the SVG must parse, the PNG must be a PNG."""
    try:
        tree = ET.parse(prefix + ".svg")
    except (ET.ParseError, OSError) as e:
        check(False, f"{prefix}.svg is not well-formed: {e}")
        return set(), ""
    with open(prefix + ".png", "rb") as f:
        check(f.read(8) == b"\x89PNG\r\n\x1a\n", f"{prefix}.png is not a PNG")
    ids = {el.get("id") for el in tree.iter() if el.get("id")}
    text = "".join(el.text or "" for el in tree.iter())
    return ids, text


def has_series(ids, name):
    return any(i == f"series-{name}" or i.startswith(f"series-{name}-") for i in ids)


def newest(pattern):
    files = sorted(glob.glob(os.path.join(ROOT, pattern)))
    if not files:
        check(False, f"no committed results match {pattern}")
        return None
    return files[-1]


out = tempfile.mkdtemp(prefix="magi_plots_")
try:
    scaling = newest("results/cpu/*_scaling.json")
    if scaling:
        doc = json.load(open(scaling))
        rows = [r for r in doc["cases"] if not r.get("skipped")]
        prefix = os.path.join(out, "scaling")
        plot("scaling", scaling, "--out", prefix)
        ids, _ = svg_ids(prefix)
        for s in sorted({r["strategy"] for r in rows if r.get("fwd_tflops_per_gpu") is not None}):
            check(has_series(ids, s), f"scaling: no series for strategy {s}")
        check(has_series(ids, "ideal"), "scaling: no ideal line")

        magi = max((r for r in rows if r["strategy"] == "magi"), key=lambda r: r["cp"])
        prefix = os.path.join(out, "mask")
        plot("mask", scaling, "--out", prefix, "--case", magi["case"])
        ids, _ = svg_ids(prefix)
        for r in range(magi["cp"]):
            check(has_series(ids, f"rank{r}"), f"mask: no colour for rank {r}")

        # A file without per-step compute times: drawn, and said so.
        prefix = os.path.join(out, "timeline_old")
        p = plot("timeline", scaling, "--out", prefix, "--case", magi["case"])
        ids, text = svg_ids(prefix)
        lacks = any("fwd_compute_ms" not in k for k in magi["ranks"])
        if lacks:
            check("no per-step compute times" in p.stderr, "timeline: a file without fwd_compute_ms is not named")
            check("has no fwd_compute_ms" in text, "timeline: the picture does not say fwd_compute_ms is missing")
        for k in magi["ranks"]:
            check(f"rank {k['rank']}" in text, f"timeline: no row for rank {k['rank']}")
            check(has_series(ids, f"comm-wait-rank{k['rank']}-fwd") or k["fwd_comm_wait_ms"] == 0,
                  f"timeline: no comm wait for rank {k['rank']}")

        # The same case with per-step compute times (as files with fwd/bwd_compute_ms have them).
        stepped = json.load(open(scaling))
        for row in stepped["cases"]:
            if row["case"] == magi["case"]:
                for k in row["ranks"]:
                    for p_ in ("fwd", "bwd"):
                        total = k[p_]["median_ms"] - k[f"{p_}_comm_wait_ms"]
                        k[f"{p_}_compute_ms"] = [0.5 * total, 0.3 * total]
        path = os.path.join(out, "stepped.json")
        json.dump(stepped, open(path, "w"))
        prefix = os.path.join(out, "timeline_new")
        p = plot("timeline", path, "--out", prefix, "--case", magi["case"])
        ids, text = svg_ids(prefix)
        check("no per-step compute times" not in p.stderr, "timeline: complains although compute steps are there")
        for k in magi["ranks"]:
            for series in ("compute-host", "compute-stage1", "other"):
                check(has_series(ids, f"{series}-rank{k['rank']}-fwd"), f"timeline: no {series} for rank {k['rank']}")

    peers = newest("results/kernel/*_v9_h100_peers_h100.json")
    if peers:
        prefix = os.path.join(out, "kernel")
        plot("kernel", peers, "--out", prefix)
        ids, _ = svg_ids(prefix)
        for key in ("ours", "flex", "sdpa_flash", "sdpa_cudnn"):
            for p_ in ("fwd", "bwd"):
                check(has_series(ids, f"{key}-{p_}"), f"kernel: no {p_} series for {key}")

    # A file of another schema is refused, by name.
    bad = os.path.join(out, "bad.json")
    json.dump({"schema": "magi-bench/results/2", "cases": []}, open(bad, "w"))
    p = plot("scaling", bad, "--out", os.path.join(out, "bad"), expect_ok=False)
    check(p.returncode != 0 and "magi-bench/results/2" in p.stderr, "another schema is not refused by name")
finally:
    shutil.rmtree(out)

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("plot_results: every picture well-formed, every series present")
