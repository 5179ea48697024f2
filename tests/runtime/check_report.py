#!/usr/bin/env python3
"""Checks a magi-bench results file (docs/results_schema.md; `run` or `kernel`): the schema tag,
every case that ran was checked and passed, and the bytes counted from the real messages equal
the plan's figures (forward and backward, summed over ranks; both 0 for the kernel alone; hybrid
plans per dimension too), per link tier where the case has tiers (magi: intra- and inter-node, the
inter-node at its bound); for
`run`, every rank reports its device's peak memory and the compute steps of each timed pass; with
MAGI_E2E_CUT_CHUNKS=1 in the environment, every case's plan has cut chunks (adaptive dispatch).
Usage: check_report.py RESULTS.json [MIN_CASES]"""
import os
import json
import sys

SCHEMA = "magi-bench/results/1"

report = json.load(open(sys.argv[1]))
min_cases = int(sys.argv[2]) if len(sys.argv) > 2 else 1
want_cuts = os.environ.get("MAGI_E2E_CUT_CHUNKS") == "1"
bad = []
if report.get("schema") != SCHEMA:
    bad.append(f"schema {report.get('schema')!r}, expected {SCHEMA!r}")
ran = 0
for c in report["cases"]:
    if c.get("skipped"):
        continue
    ran += 1
    name = f'{c["case"]} {c["strategy"]}'
    if c["check"] != "passed":
        bad.append(f"{name}: check {c['check']!r}")
    fwd = sum(r["fwd_sent_bytes"] for r in c["ranks"])
    bwd = sum(r["bwd_sent_bytes"] for r in c["ranks"])
    if fwd != c["planned_fwd_bytes"]:
        bad.append(f"{name}: measured fwd bytes {fwd} != planned {c['planned_fwd_bytes']}")
    if bwd != c["planned_bwd_bytes"]:
        bad.append(f"{name}: measured bwd bytes {bwd} != planned {c['planned_bwd_bytes']}")
    tiers = c.get("tiers")
    if tiers is not None:
        for p in ("fwd", "bwd"):
            for t in ("intra_node", "inter_node"):
                planned, measured = tiers[f"planned_{p}_{t}_bytes"], tiers[f"measured_{p}_{t}_bytes"]
                if planned != measured:
                    bad.append(f"{name}: measured {p} {t} bytes {measured} != planned {planned}")
        if tiers["planned_fwd_inter_node_bytes"] != tiers["bound_fwd_inter_node_bytes"]:
            bad.append(f"{name}: inter-node fwd bytes {tiers['planned_fwd_inter_node_bytes']} "
                       f"above the bound {tiers['bound_fwd_inter_node_bytes']}")
        inter = sum(r["fwd_inter_node_sent_bytes"] for r in c["ranks"])
        if inter != tiers["measured_fwd_inter_node_bytes"]:
            bad.append(f"{name}: ranks' inter-node bytes {inter} != {tiers['measured_fwd_inter_node_bytes']}")
    if c["strategy"] != "none":
        for r in c["ranks"]:
            if r["peak_memory_bytes"] <= 0:
                bad.append(f"{name}: rank {r['rank']} peak memory {r['peak_memory_bytes']}")
            for p in ("fwd", "bwd"):
                if r[p]["count"] > 0 and not r[f"{p}_compute_ms"]:
                    bad.append(f"{name}: rank {r['rank']} timed {p} passes without compute steps")
    if want_cuts and c["details"]["plan"]["split_chunks"] <= 0:
        bad.append(f"{name}: the plan cuts no chunk (details.plan.split_chunks 0): not the cut dispatch this suite tests")
    hybrid = c.get("details", {}).get("hybrid")
    world = c["cp"] * (hybrid["heads"] if hybrid else 1)
    if len(c["ranks"]) != world:
        bad.append(f"{name}: {len(c['ranks'])} rank rows for {world} ranks")
    if hybrid:  # bytes per dimension (head all-to-all, context strategy) counted == planned
        for key, planned in hybrid["planned"].items():
            if hybrid["measured"][key] != planned:
                bad.append(f"{name}: measured {key} {hybrid['measured'][key]} != planned {planned}")
if ran < min_cases:
    bad.append(f"only {ran} cases ran, expected at least {min_cases}")
for b in bad:
    print("FAIL:", b)
print(f"{ran} cases checked, {len(bad)} problems")
sys.exit(1 if bad else 0)
