#!/usr/bin/env python3
"""Judges a kernel record against issue 13's floor and prints the README's kernel table.

Reads `magi-bench kernel` results files (docs/results_schema.md; plain or .json.xz, as records are
kept under results/), e.g. the four that scripts/gpu_kernel.sh writes, and optionally the peer
files of scripts/bench_kernel_peers.py.
Every share is against the full mask of the same file, head layout, size and head dim (cases of one
file are timed back to back in one process; a full case of another file ran elsewhere in the call).

The floor (issue 13, head dim 128 at 32k tokens, each head layout):
  - the full mask at >= 560 TFLOP/s forward and >= 480 backward;
  - every other mask at >= 85% of that full mask's rate, forward and backward;
  - head dim 64's full mask at >= 75% of head dim 128's (same file, layout and size).

Beside each share it prints the tile fill's bound: the mask's visible pairs over the pairs of the
tiles the kernel walks (details.kernel of the record), relative to the full mask's. A kernel whose
every tile costs what a full tile costs reaches that share and no more, so a miss whose floor is
above the bound is for the tiles to mend (their shape, or skipping a tile's masked part), not the
pipeline; the miss says so.

Usage: kernel_floor.py KERNEL.json... [--peers PEERS.json]... [--tokens 32768] [--markdown]
Prints every share and each miss; --markdown prints the README table (mask x head layout, forward
/ backward) instead. Exit 0 when the floor is met, 1 when a case misses it, 2 on bad input."""
import argparse
import json
import lzma
import sys

SCHEMA = "magi-bench/results/1"
FULL_FWD, FULL_BWD = 560.0, 480.0
MASK_SHARE = 0.85
D64_SHARE = 0.75
FLOOR_HEAD_DIM = 128


def load_json(path):
    try:
        with (lzma.open(path, "rt") if path.endswith(".xz") else open(path)) as f:
            return json.load(f)
    except (OSError, ValueError, lzma.LZMAError) as e:
        print(f"kernel_floor.py: {path}: {e}", file=sys.stderr)
        sys.exit(2)


def load(path):
    report = load_json(path)
    if report.get("schema") != SCHEMA:
        print(f"kernel_floor.py: {path}: schema {report.get('schema')!r}, expected {SCHEMA!r}", file=sys.stderr)
        sys.exit(2)
    return report


def layout(c):
    return f'{c["heads_q"]}:{c["heads_kv"]}'


def mask_label(c):
    """The mask with its parameters, as the README's table names it."""
    m = c["mask"]
    p = c.get("details", {}).get("config", {}).get("mask", {})
    args = {"sliding_window": ["window"], "varlen_sliding_window": ["window"],
            "varlen_block_causal": ["block_tokens"], "block_causal": ["block_tokens"],
            "shared_question": ["question_tokens"], "prefix_lm": ["prefix_tokens"],
            "sink_sliding_window": ["sink_tokens", "window"]}.get(m, [])
    values = [str(p[a]) for a in args if a in p]
    return f'{m} ({", ".join(values)})' if values else m


def tile_fill(c):
    """(forward, backward) visible pairs over the pairs of the tiles walked; None without the counts."""
    k = c.get("details", {}).get("kernel", {})
    t = k.get("tiles")
    if not t or not k.get("forward_tiles") or not k.get("backward_tiles") or not c.get("area"):
        return None
    pairs = c["area"] * c["heads_q"]
    return (pairs / (k["forward_tiles"] * t["fwd_rows"] * t["fwd_keys"]),
            pairs / (k["backward_tiles"] * t["bwd_rows"] * t["bwd_keys"]))


def fill_bound(c, ref):
    """The shares the tile fill allows c against its full mask ref: (fwd, bwd), or (None, None)."""
    fc, fr = tile_fill(c), tile_fill(ref) if ref else None
    return (fc[0] / fr[0], fc[1] / fr[1]) if fc and fr else (None, None)


def judge(files, tokens):
    """Rows (file, case, layout, mask, fwd, bwd, share_fwd, share_bwd, bound_fwd, bound_bwd) and the
    misses, in words."""
    rows, misses = [], []
    for path, report in files:
        cases = [c for c in report["cases"] if not c.get("skipped") and c["total_tokens"] == tokens]
        full = {(layout(c), c["head_dim"]): c for c in cases if c["mask"] == "full"}
        for c in cases:
            key = (layout(c), c["head_dim"])
            ref = full.get(key)
            fwd, bwd = c["fwd_tflops_per_gpu"], c["bwd_tflops_per_gpu"]
            share = (fwd / ref["fwd_tflops_per_gpu"], bwd / ref["bwd_tflops_per_gpu"]) if ref else (None, None)
            bound = fill_bound(c, ref)
            rows.append((path, c["case"], key[0], c["head_dim"], mask_label(c), fwd, bwd, *share, *bound))
            where = f'{c["case"]} ({path}), {key[0]} d {c["head_dim"]}'
            if c["head_dim"] != FLOOR_HEAD_DIM:
                continue
            if c["mask"] == "full":
                if fwd < FULL_FWD or bwd < FULL_BWD:
                    misses.append(f"{where}: full {fwd:.0f} / {bwd:.0f}, floor {FULL_FWD:.0f} / {FULL_BWD:.0f}")
                d64 = full.get((key[0], 64))
                if d64:
                    s = d64["fwd_tflops_per_gpu"] / fwd, d64["bwd_tflops_per_gpu"] / bwd
                    rows.append((path, d64["case"], key[0], 64, "full, d 64 / d 128", d64["fwd_tflops_per_gpu"],
                                 d64["bwd_tflops_per_gpu"], *s, None, None))
                    if min(s) < D64_SHARE:
                        misses.append(f"{where}: d 64 full at {s[0]:.3f} / {s[1]:.3f} of d 128, floor {D64_SHARE}")
            elif ref is None:
                misses.append(f"{where}: {c['mask']} has no full-mask case in its file to be judged against")
            elif min(share) < MASK_SHARE:
                beyond = [f"{name} {b:.3f}" for name, sh, b in zip(("fwd", "bwd"), share, bound)
                          if sh < MASK_SHARE and b is not None and b < MASK_SHARE]
                note = f" (beyond these tiles: their fill bounds {', '.join(beyond)})" if beyond else ""
                misses.append(f"{where}: {c['mask']} at {share[0]:.3f} / {share[1]:.3f} of full, floor {MASK_SHARE}{note}")
    return rows, misses


def share_text(x):
    return f"{x:5.3f}" if x is not None else "    -"


def markdown(rows, tokens):
    """mask x head layout at head dim 128, forward / backward TFLOP/s, first file's full first."""
    layouts, order, cells = [], [], {}
    for _, _, lay, d, label, fwd, bwd, *_ in rows:
        if d != FLOOR_HEAD_DIM or (label in cells and lay in cells[label]):
            continue  # each mask once: the first file that has it (its full first)
        if lay not in layouts:
            layouts.append(lay)
        if label not in cells:
            order.append(label)
            cells[label] = {}
        cells[label][lay] = f"{fwd:.0f} / {bwd:.0f}"
    size = f"{tokens // 1024}k" if tokens % 1024 == 0 else str(tokens)
    out = [f"| mask ({size}) | " + " | ".join(f"{lay} heads" for lay in layouts) + " |",
           "| --- |" + " --- |" * len(layouts)]
    for label in order:
        out.append(f"| {label} | " + " | ".join(cells[label].get(lay, "-") for lay in layouts) + " |")
    return "\n".join(out)


def peer_lines(peer_files):
    out = []
    for path, p in peer_files:
        for c in p.get("cases", []):
            parts = []
            for name, tag in (("sdpa_cudnn", "cuDNN"), ("flex", "FlexAttention"), ("sdpa_flash", "FA2")):
                r = c.get(name)
                if r and r.get("ratio_fwd") is not None:
                    parts.append(f"{tag} {r['ratio_fwd']:.2f} / {r['ratio_bwd']:.2f}")
            if parts:
                out.append(f'  {c["mask"]:22s} {c["heads_q"]}:{c["heads_kv"]:<3} ours / ' + ", ".join(parts))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kernel", nargs="+", help="magi-bench kernel results files (.json or .json.xz)")
    ap.add_argument("--peers", action="append", default=[], help="bench_kernel_peers.py output (repeatable)")
    ap.add_argument("--tokens", type=int, default=32768, help="the size judged (default 32768)")
    ap.add_argument("--markdown", action="store_true", help="print the README table instead")
    a = ap.parse_args()
    if a.tokens <= 0:
        print(f"kernel_floor.py: --tokens {a.tokens}: expected > 0", file=sys.stderr)
        return 2
    files = [(path, load(path)) for path in a.kernel]
    rows, misses = judge(files, a.tokens)
    if not rows:
        print(f"kernel_floor.py: no case of {a.tokens} tokens in {', '.join(a.kernel)}", file=sys.stderr)
        return 2
    if a.markdown:
        print(markdown(rows, a.tokens))
        return 1 if misses else 0
    print(f"# shares of the same file's full mask, {a.tokens} tokens (fwd / bwd TFLOP/s, fwd / bwd share,"
          " fwd / bwd share the tile fill allows)")
    for path, case, lay, d, label, fwd, bwd, sf, sb, bf, bb in rows:
        print(f"{case:26s} {lay:>6s} d{d:<4d} {label:34s} {fwd:6.1f} / {bwd:6.1f}  {share_text(sf)} / {share_text(sb)}"
              f"  {share_text(bf)} / {share_text(bb)}")
    peers = peer_lines([(p, load_json(p)) for p in a.peers])
    if peers:
        print("# peers (ratio = ours / peer, fwd / bwd)")
        print("\n".join(peers))
    if misses:
        print(f"# floor missed by {len(misses)} case{'s' if len(misses) > 1 else ''}:")
        print("\n".join(f"  {m}" for m in misses))
        return 1
    print("# floor met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
