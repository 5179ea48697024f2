#!/usr/bin/env python3
"""Pictures of magi-bench results, as SVG and PNG, with matplotlib (the distribution's
python3-matplotlib, which scripts/setup.sh installs).

Reads results files in the results schema (magi-bench/results/1, docs/results_schema.md), and for
`kernel` the peers file scripts/bench_kernel_peers.py writes (our TFLOP/s and the peers', measured
in one run):

  plot_results.py scaling  RESULTS.json --out PREFIX   TFLOP/s per GPU against cp, one line per
                                                       strategy, the ideal (cp 1's rate held) dashed
  plot_results.py mask     RESULTS.json --out PREFIX [--case NAME]
                                                       the mask, each visible (q, k) pair coloured by
                                                       the rank that owns query q (the dispatch)
  plot_results.py timeline RESULTS.json --out PREFIX [--case NAME]
                                                       per rank: compute steps, exposed communication
                                                       wait and the rest of a pass, from the medians
  plot_results.py kernel   PEERS.json   --out PREFIX [--tokens S] [--head-dim D]
                                                       kernel TFLOP/s per mask, ours against the peers

Each writes PREFIX.svg and PREFIX.png. Every plotted series carries an SVG id "series-<name>", so a
test (tests/scripts/test_plot_results.py) can find each one in the file.
"""
import argparse
import json
import math
import os
import re
import sys

RESULTS_SCHEMA = "magi-bench/results/1"


def need_matplotlib():
    try:
        import matplotlib
    except ImportError:
        sys.exit(f"plot_results: matplotlib is not importable by {sys.executable}: install the "
                 "distribution's python3-matplotlib (scripts/setup.sh does) and run this script with "
                 "the distribution's python3 (/usr/bin/python3)")
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"       # text stays text: readable and searchable
    matplotlib.rcParams["svg.hashsalt"] = "magi-bench"  # ids do not change from run to run
    import matplotlib.pyplot as plt
    return plt


def series_id(name):
    return "series-" + re.sub(r"[^A-Za-z0-9_-]", "_", str(name))


def tag_bars(bars, name):
    """Bars are one patch each: ids series-<name>-0, -1, ... (SVG ids must be unique)."""
    for i, patch in enumerate(bars):
        patch.set_gid(f"{series_id(name)}-{i}")


def load_results(path):
    with open(path) as f:
        doc = json.load(f)
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema != RESULTS_SCHEMA:
        sys.exit(f"plot_results: {path}: schema {schema!r}: expected {RESULTS_SCHEMA!r} (a results file "
                 "of run or kernel --out; files written before the results schema cannot be read)")
    return doc


def save(fig, prefix):
    directory = os.path.dirname(prefix)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(prefix + ".svg", metadata={"Date": None})
    fig.savefig(prefix + ".png", dpi=110, metadata={"Software": None})
    print(f"plot_results: wrote {prefix}.svg and {prefix}.png")


def provenance(doc):
    m = doc.get("metadata", {})
    devices = ", ".join(d.get("name", "?") for d in m.get("devices", []) if isinstance(d, dict))
    return (f"magi-bench {m.get('version', '?')} (git {m.get('git_sha', '?')}), backend "
            f"{m.get('backend', '?')}, {m.get('world_size', '?')} ranks on {devices or '?'}, "
            f"{m.get('start_time_utc', '?')}")


def point_key(row):
    """The sweep point of a row up to cp and strategy, without how it was measured (as compare)."""
    try:
        key = json.loads(row["case_key"])
    except (KeyError, ValueError):
        return row.get("case_key", "")
    if isinstance(key, dict):
        key.pop("run", None)
        key.pop("description", None)
    return json.dumps(key, sort_keys=True)


def ran(rows):
    return [r for r in rows if not r.get("skipped")]


def pick_case(doc, name, need):
    rows = ran(doc["cases"])
    if name:
        for r in rows:
            if r["case"] == name:
                return r
        sys.exit(f"plot_results: no case {name!r} that ran; cases: "
                 + ", ".join(r["case"] for r in rows))
    usable = [r for r in rows if need(r)]
    if not usable:
        sys.exit("plot_results: no case in the file has what this picture needs")
    # The largest cp, magi first: the most to see.
    usable.sort(key=lambda r: (-r["cp"], r["strategy"] != "magi"))
    return usable[0]


# --- scaling ------------------------------------------------------------------------------------

def plot_scaling(args):
    plt = need_matplotlib()
    doc = load_results(args.results)
    rows = ran(doc["cases"])
    points = []
    for r in rows:
        k = point_key(r)
        if k not in points:
            points.append(k)
    passes = [p for p in ("fwd", "bwd") if any(r.get(f"{p}_tflops_per_gpu") is not None for r in rows)]
    if not rows or not passes:
        sys.exit(f"plot_results: {args.results}: no case with a measured TFLOP/s")
    fig, axes = plt.subplots(len(points), len(passes), figsize=(5.2 * len(passes), 3.6 * len(points)),
                             squeeze=False)
    strategies = sorted({r["strategy"] for r in rows})
    colours = dict(zip(strategies, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for i, k in enumerate(points):
        prow = [r for r in rows if point_key(r) == k]
        first = prow[0]
        for j, p in enumerate(passes):
            ax = axes[i][j]
            cps = sorted({r["cp"] for r in prow})
            for s in strategies:
                pts = sorted((r["cp"], r[f"{p}_tflops_per_gpu"]) for r in prow
                             if r["strategy"] == s and r.get(f"{p}_tflops_per_gpu") is not None)
                if not pts:
                    continue
                line, = ax.plot([c for c, _ in pts], [v for _, v in pts], marker="o", label=s,
                                color=colours[s])
                line.set_gid(series_id(s))
            base = [r[f"{p}_tflops_per_gpu"] for r in prow
                    if r["cp"] == 1 and r.get(f"{p}_tflops_per_gpu") is not None]
            if base:
                ideal, = ax.plot(cps, [max(base)] * len(cps), linestyle="--", color="grey",
                                 label="ideal (cp 1 rate per GPU)")
                ideal.set_gid(series_id("ideal"))
            ax.set_xscale("log", base=2)
            ax.set_xticks(cps)
            ax.set_xticklabels([str(c) for c in cps])
            ax.set_xlabel("cp (ranks)")
            ax.set_ylabel(f"{p} TFLOP/s per GPU")
            ax.set_ylim(bottom=0)
            ax.set_title(f"{p}: {first['mask']}, S={first['total_tokens']}, hq={first['heads_q']} "
                         f"hkv={first['heads_kv']} d={first['head_dim']}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("TFLOP/s per GPU against cp (flat = linear scaling)\n" + provenance(doc), fontsize=8)
    fig.tight_layout()
    save(fig, args.out)


# --- mask and dispatch --------------------------------------------------------------------------

def visible_keys(s, q):
    """[lo, hi) of query q in slice s = (qs, qe, ks, ke, type): DESIGN.md §1's band rule."""
    qs, qe, ks, ke, kind = s
    lo = ks + (q - qs) if kind in ("inv_causal", "bi_causal") else ks
    hi = ke - (qe - 1 - q) if kind in ("causal", "bi_causal") else ke
    return max(lo, ks), min(hi, ke)


def plot_mask(args):
    plt = need_matplotlib()
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    doc = load_results(args.results)

    def has_picture(r):
        d = r.get("details", {}).get("dispatch")
        return isinstance(d, dict) and d.get("mask_slices") is not None
    row = pick_case(doc, args.case, has_picture)
    if not has_picture(row):
        sys.exit(f"plot_results: case {row['case']} has no details.dispatch.mask_slices (a kernel row, "
                 "a file written before they were recorded, or a mask of more slices than a row keeps)")
    d = row["details"]["dispatch"]
    S = row["total_tokens"]
    g = min(S, args.pixels)
    centres = (np.arange(g) + 0.5) * S / g
    owner = np.full(g, -1)
    for rank, ranges in enumerate(d["rank_q_ranges"]):
        for start, end in ranges:
            owner[(centres >= start) & (centres < end)] = rank
    img = np.full((g, g), -1)
    for s in d["mask_slices"]:
        qs, qe = s[0], s[1]
        rows = np.nonzero((centres >= qs) & (centres < qe))[0]
        for pr in rows:
            lo, hi = visible_keys(s, int(centres[pr]))
            if hi <= lo:
                continue
            c0 = int(math.floor(lo * g / S))
            c1 = max(c0 + 1, int(math.ceil(hi * g / S)))
            img[pr, c0:c1] = owner[pr]
    cp = len(d["rank_q_ranges"])
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = ["white"] + [palette[r % len(palette)] for r in range(cp)]
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.imshow(img + 1, cmap=ListedColormap(colours), vmin=0, vmax=cp, interpolation="nearest",
              extent=(0, S, S, 0))
    ax.set_xlabel("key token")
    ax.set_ylabel("query token")
    areas = {k["rank"]: k for k in row.get("ranks", [])}
    handles = []
    for r in range(cp):
        info = areas.get(r, {})
        h = Patch(color=colours[r + 1],
                  label=f"rank {r}: {info.get('tokens', '?')} tokens, area {info.get('area', '?')}")
        h.set_gid(series_id(f"rank{r}"))
        handles.append(h)
    legend = ax.legend(handles=handles, fontsize=7, loc="upper right")
    for h, patch in zip(handles, legend.get_patches()):
        patch.set_gid(h.get_gid())
    ax.set_title(f"{row['case']}: {row['mask']}, S={S}, {row['strategy']} cp={row['cp']}: "
                 f"imbalance {row.get('imbalance', float('nan')):.3f}\n"
                 "each visible (q, k) pair coloured by the rank that owns query q", fontsize=9)
    fig.suptitle(provenance(doc), fontsize=7, y=0.02, va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save(fig, args.out)


# --- per-rank timeline --------------------------------------------------------------------------

def compute_steps(rank, p):
    v = rank.get(f"{p}_compute_ms")
    if v is None:
        return None
    return [float(x) for x in v] if isinstance(v, list) else [float(v)]


def plot_timeline(args):
    plt = need_matplotlib()
    doc = load_results(args.results)
    row = pick_case(doc, args.case, lambda r: bool(r.get("ranks")))
    passes = [p for p in ("fwd", "bwd") if row.get(f"{p}_ms") is not None]
    ranks = sorted(row["ranks"], key=lambda k: k["rank"])
    lacking = [p for p in passes if any(compute_steps(k, p) is None for k in ranks)]
    if lacking:
        print(f"plot_results: {args.results}: case {row['case']} has no per-step compute times "
              f"({', '.join(p + '_compute_ms' for p in lacking)}; files written before they were "
              "recorded): compute is drawn as one block with the rest of the pass", file=sys.stderr)
    fig, axes = plt.subplots(len(passes), 1, figsize=(11, 1.4 + 0.6 * len(ranks) * len(passes)),
                             squeeze=False)
    step_colours = plt.cm.Blues([0.75, 0.55, 0.4, 0.3, 0.22, 0.16])
    seen = set()

    def bar(ax, y, start, width, colour, name, label, p):
        if width <= 0:
            return
        first = name not in seen
        bars = ax.barh(y, width, left=start, color=colour, edgecolor="black", linewidth=0.4,
                       label=label if first else None)
        tag_bars(bars, f"{name}-rank{y}-{p}")
        seen.add(name)

    for i, p in enumerate(passes):
        ax = axes[i][0]
        seen.clear()
        for k in ranks:
            y = k["rank"]
            total = k[p]["median_ms"]
            wait = k.get(f"{p}_comm_wait_ms", 0.0) or 0.0
            steps = compute_steps(k, p)
            t = 0.0
            if steps is None:
                bar(ax, y, t, total - wait, "#9ecae1", "compute-and-other",
                    f"compute and the rest (no {p}_compute_ms in this file)", p)
                t += max(0.0, total - wait)
            else:
                for s, ms in enumerate(steps):
                    name = "compute-host" if s == 0 else f"compute-stage{s}"
                    label = "compute, host stage" if s == 0 else f"compute, remote stage {s}"
                    bar(ax, y, t, ms, step_colours[min(s, len(step_colours) - 1)], name, label, p)
                    t += ms
            bar(ax, y, t, wait, "#fd8d3c", "comm-wait", "waiting on communication (exposed)", p)
            t += wait
            if steps is not None:
                bar(ax, y, t, total - t, "#d9d9d9", "other", "the rest (merge, copies, sync)", p)
            # The rank's share of the mask: what its compute has to do.
            ax.text(max(t, total), y, f"  area {k.get('area', '?')}", va="center", fontsize=7)
        ax.set_yticks([k["rank"] for k in ranks])
        ax.set_yticklabels([f"rank {k['rank']}" for k in ranks])
        ax.invert_yaxis()
        ax.set_xlabel(f"{p} time per iteration (ms, medians laid end to end; not a trace)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.margins(x=0.12)
        ax.grid(axis="x", alpha=0.3)
        note = ("" if p not in lacking else
                f"\nthis file has no {p}_compute_ms (written before per-step compute times): "
                "compute is one block with the rest")
        ax.set_title(f"{p}: {row['case']} {row['mask']} S={row['total_tokens']} {row['strategy']} "
                     f"cp={row['cp']}, slowest rank {row[f'{p}_ms']:.3g} ms{note}", fontsize=8)
    fig.suptitle(provenance(doc), fontsize=7, y=0.01, va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save(fig, args.out)


# --- kernel against the peers -------------------------------------------------------------------

PEERS = [("ours", "magi-bench flex kernel"), ("flex", "FlexAttention (torch.compile)"),
         ("sdpa_flash", "SDPA flash (FlashAttention-2)"), ("sdpa_cudnn", "SDPA cuDNN")]


def plot_kernel(args):
    plt = need_matplotlib()
    with open(args.peers) as f:
        doc = json.load(f)
    cases = doc.get("cases", [])
    if not cases:
        sys.exit(f"plot_results: {args.peers}: no cases (expected scripts/bench_kernel_peers.py --out)")
    tokens = args.tokens or max(c["total_tokens"] for c in cases)
    head_dim = args.head_dim or max(c["head_dim"] for c in cases)
    chosen = [c for c in cases if c["total_tokens"] == tokens and c["head_dim"] == head_dim]
    if not chosen:
        sys.exit(f"plot_results: {args.peers}: no case of {tokens} tokens and head dim {head_dim}")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    width = 0.8 / len(PEERS)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, p in zip(axes, ("fwd", "bwd")):
        for j, (key, label) in enumerate(PEERS):
            xs, ys = [], []
            for i, c in enumerate(chosen):
                v = c.get(key, {}).get(f"{p}_tflops") if isinstance(c.get(key), dict) else None
                if v is not None:
                    xs.append(i + (j - (len(PEERS) - 1) / 2) * width)
                    ys.append(v)
            if not xs:
                continue
            bars = ax.bar(xs, ys, width, label=label, color=palette[j])
            tag_bars(bars, f"{key}-{p}")
        ax.set_xticks(range(len(chosen)))
        ax.set_xticklabels([c["mask"] for c in chosen], rotation=25, ha="right", fontsize=8)
        ax.set_ylabel(f"{p} TFLOP/s")
        ax.set_title(f"{p}, S={tokens}, d={head_dim}, hq={chosen[0]['heads_q']} hkv={chosen[0]['heads_kv']}"
                     " (no bar: the peer cannot take that mask)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    # Below the axes, one row: inside them it hides the tallest bars.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=len(labels))
    m = doc.get("metadata", {})
    fig.suptitle(f"Kernel TFLOP/s per mask against the peers, one run on {m.get('card', '?')} "
                 f"({m.get('time', '?')}; torch {m.get('torch', '?')})", fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save(fig, args.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="picture", required=True)
    for name, fn in (("scaling", plot_scaling), ("mask", plot_mask), ("timeline", plot_timeline)):
        sp = sub.add_parser(name)
        sp.add_argument("results")
        sp.add_argument("--out", required=True, help="prefix of the .svg and .png written")
        if name != "scaling":
            sp.add_argument("--case", help="the case's name (default: the largest cp, magi first)")
        if name == "mask":
            sp.add_argument("--pixels", type=int, default=384, help="picture side in pixels (at most S)")
        sp.set_defaults(fn=fn)
    sp = sub.add_parser("kernel")
    sp.add_argument("peers", help="JSON of scripts/bench_kernel_peers.py --out")
    sp.add_argument("--out", required=True)
    sp.add_argument("--tokens", type=int, help="total tokens of the cases shown (default: the largest)")
    sp.add_argument("--head-dim", type=int, help="head dim of the cases shown (default: the largest)")
    sp.set_defaults(fn=plot_kernel)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
