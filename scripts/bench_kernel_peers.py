#!/usr/bin/env python3
"""Peer baselines for `magi-bench kernel`, measured on the same card in the same run.

Reads the JSON that `magi-bench kernel --out` wrote (docs/results_schema.md), rebuilds each
case's mask (same documents, window and blocks: each case's details record them) and times, with
the same FLOP count (DESIGN.md §1, from the mask area our JSON records):
  - PyTorch SDPA, flash backend (FlashAttention-2) and cuDNN backend: full and causal only (SDPA
    takes no slice list; other masks are reported as n/a);
  - FlexAttention (torch.compile'd flex_attention with a block mask) on every mask.
Then prints our TFLOP/s, each peer's, and our ratio to each, and writes them as JSON (--out).

Timing: CUDA events around single calls, median of --iters after --warmup calls, the warm-up
lasting at least 1 s and the timed calls at least 2 s (the method of
lib/runtime/cuda/kernel_benchmark.h). Backward =
torch.autograd.grad of (q, k, v) from a kept graph.
Inputs: random normal bf16, batch 1, layout [1, heads, S, d].

Usage: python3 scripts/bench_kernel_peers.py OURS.json [--out PEERS.json] [--iters 20] [--warmup 5]
           [--head-dim D] [--min-tokens S]
"""
import argparse
import json
import math
import os
import sys
import time


# As lib/runtime/cuda/kernel_bench_device.cu: after a warm-up of --warmup calls, the warm-up goes
# on until it has lasted MIN_WARMUP_S (each case timed in the card's power-capped steady state)
# and the timed calls until they have lasted MIN_TIMED_S (their median spans the clock's swings
# at the cap, about 1 s apart).
MIN_WARMUP_S = 1.0
MIN_TIMED_S = 2.0


def more_to_last(min_s, done, spent):
    if done <= 0 or spent >= min_s:
        return 0
    return math.ceil((min_s - spent) / max(spent / done, 1e-6))


def median_ms(fn, warmup, iters):
    import torch
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    if warmup > 0:
        for _ in range(more_to_last(MIN_WARMUP_S, warmup, time.perf_counter() - start)):
            fn()
        torch.cuda.synchronize()
    starts, ends = [], []

    def timed(n):
        for _ in range(n):
            starts.append(torch.cuda.Event(enable_timing=True))
            ends.append(torch.cuda.Event(enable_timing=True))
            starts[-1].record()
            fn()
            ends[-1].record()
        torch.cuda.synchronize()

    timed_start = time.perf_counter()
    timed(iters)
    if warmup > 0:
        timed(more_to_last(MIN_TIMED_S, iters, time.perf_counter() - timed_start))
    ms = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    n = len(ms)
    return ms[n // 2] if n % 2 else 0.5 * (ms[n // 2 - 1] + ms[n // 2])


def doc_tensors(case, S, device):
    import torch
    docs = case["details"].get("document_lengths") or [S]
    doc_id = torch.empty(S, dtype=torch.int32, device=device)
    doc_start = torch.empty(S, dtype=torch.int32, device=device)
    pos = 0
    for i, n in enumerate(docs):
        doc_id[pos:pos + n] = i
        doc_start[pos:pos + n] = pos
        pos += n
    assert pos == S, (pos, S)
    return doc_id, doc_start


def mask_mod_for(case, S, device):
    """FlexAttention mask_mod for the catalogue masks of configs/kernel_h100*.json."""
    m = case["mask"]
    doc_id, doc_start = doc_tensors(case, S, device)
    w = case["details"]["mask"]["window"]
    B = case["details"]["mask"]["block_tokens"]
    if m == "full":
        return None
    if m == "causal":
        return lambda b, h, q, k: q >= k
    if m == "sliding_window":
        return lambda b, h, q, k: (q >= k) & (q - k <= w)
    if m == "varlen_full":
        return lambda b, h, q, k: doc_id[q] == doc_id[k]
    if m == "varlen_causal":
        return lambda b, h, q, k: (doc_id[q] == doc_id[k]) & (q >= k)
    if m == "varlen_sliding_window":
        return lambda b, h, q, k: (doc_id[q] == doc_id[k]) & (q >= k) & (q - k <= w)
    if m == "block_causal":
        return lambda b, h, q, k: (k // B) <= (q // B)
    if m == "varlen_block_causal":
        return lambda b, h, q, k: (doc_id[q] == doc_id[k]) & (
            (k - doc_start[k]) // B <= (q - doc_start[q]) // B)
    raise KeyError(m)


def time_fwd_bwd(fn, q, k, v, dout, warmup, iters):
    import torch
    f_ms = median_ms(lambda: fn(q, k, v), warmup, iters)
    out = fn(q, k, v)

    def bwd():
        torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
    b_ms = median_ms(bwd, warmup, iters)
    return f_ms, b_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ours", help="JSON written by magi-bench kernel --out")
    ap.add_argument("--out", help="write peers and ratios as JSON here (refuses to overwrite)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--no-flex", action="store_true", help="skip FlexAttention")
    ap.add_argument("--head-dim", type=int, help="only the cases of this head dim")
    ap.add_argument("--min-tokens", type=int, default=0, help="only the cases of at least this many tokens")
    args = ap.parse_args()
    if args.out and os.path.exists(args.out):
        sys.exit(f"{args.out} exists: refusing to overwrite")

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    # The backward is timed by replaying one kept graph (retain_graph=True); compiled backward
    # graphs must then not donate their buffers.
    import torch._functorch.config as functorch_config
    functorch_config.donated_buffer = False
    # Every mask (and size) is a new mask_mod and block mask, hence a recompilation: past dynamo's
    # default limit of 8 it falls back to eager flex_attention, which materialises S x S scores
    # (64 GiB at 32k tokens, 16 heads) and runs out of memory.
    import torch._dynamo.config as dynamo_config
    for name, limit in (("recompile_limit", 256), ("accumulated_recompile_limit", 4096)):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, limit)
    flex = None
    if not args.no_flex:
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention
            # Static shapes: after the first recompilation dynamo would otherwise compile every
            # later mask and size for dynamic shapes, whose kernels ran slower (H100, 32k varlen
            # causal after the 8k cases in one process: 255 / 208 TFLOP/s against 327 / 326 fresh).
            flex = torch.compile(flex_attention, dynamic=False)
        except Exception as e:  # noqa: BLE001
            print(f"# FlexAttention unavailable: {e}")

    ours = json.load(open(args.ours))
    if ours.get("schema") != "magi-bench/results/1":
        sys.exit(f"{args.ours}: schema {ours.get('schema')!r}, expected magi-bench/results/1 "
                 "(docs/results_schema.md)")
    dev = torch.device("cuda")
    card = torch.cuda.get_device_name(0)
    print(f"# peers on {card}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    results = []
    hdr = (f"{'case':<26} {'mask':<20} {'S':>6} {'heads':>6} {'d':>4} | {'ours f/b':>13} | "
           f"{'flash f/b':>13} {'ratio':>11} | {'cudnn f/b':>13} {'ratio':>11} | {'flex f/b':>13} {'ratio':>11}")
    print(hdr)
    for case in ours["cases"]:
        if case.get("skipped"):
            continue
        if args.head_dim is not None and case["head_dim"] != args.head_dim:
            continue
        if case["total_tokens"] < args.min_tokens:
            continue
        S, hq, hkv, d = case["total_tokens"], case["heads_q"], case["heads_kv"], case["head_dim"]
        fwd_flops, bwd_flops = case["fwd_flops"], case["bwd_flops"]
        ours_fwd, ours_bwd = case["fwd_tflops_per_gpu"], case["bwd_tflops_per_gpu"]  # cp 1: the GPU's
        torch.manual_seed(1234)
        q = torch.randn(1, hq, S, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(1, hkv, S, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(1, hkv, S, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
        dout = torch.randn(1, hq, S, d, device=dev, dtype=torch.bfloat16)
        row = {"case": case["case"], "mask": case["mask"], "total_tokens": S, "heads_q": hq,
               "heads_kv": hkv, "head_dim": d,
               "ours": {"fwd_tflops": ours_fwd, "bwd_tflops": ours_bwd}}

        def rate(f_ms, b_ms):
            return {"fwd_ms": f_ms, "bwd_ms": b_ms, "fwd_tflops": fwd_flops / (f_ms * 1e-3) / 1e12,
                    "bwd_tflops": bwd_flops / (b_ms * 1e-3) / 1e12}

        for name, backend in (("sdpa_flash", SDPBackend.FLASH_ATTENTION),
                              ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)):
            if case["mask"] not in ("full", "causal"):
                row[name] = {"na": "SDPA takes no slice list / document mask"}
                continue
            causal = case["mask"] == "causal"
            try:
                def fn(q_, k_, v_, backend=backend, causal=causal):
                    with sdpa_kernel(backend):
                        return F.scaled_dot_product_attention(q_, k_, v_, is_causal=causal,
                                                              enable_gqa=hq != hkv)
                row[name] = rate(*time_fwd_bwd(fn, q, k, v, dout, args.warmup, args.iters))
            except Exception as e:  # noqa: BLE001
                row[name] = {"error": str(e).split("\n")[0][:200]}
        if flex is not None:
            try:
                mm = mask_mod_for(case, S, dev)
                bm = None if mm is None else create_block_mask(mm, None, None, S, S, device=dev, _compile=True)

                def fn(q_, k_, v_, bm=bm):
                    return flex(q_, k_, v_, block_mask=bm, enable_gqa=hq != hkv)
                row["flex"] = rate(*time_fwd_bwd(fn, q, k, v, dout, args.warmup, args.iters))
            except Exception as e:  # noqa: BLE001
                row["flex"] = {"error": str(e).split("\n")[0][:200]}
        for name in ("sdpa_flash", "sdpa_cudnn", "flex"):
            p = row.get(name, {})
            if "fwd_tflops" in p:
                p["ratio_fwd"] = ours_fwd / p["fwd_tflops"]
                p["ratio_bwd"] = ours_bwd / p["bwd_tflops"]

        def cell(p):
            if "fwd_tflops" in p:
                return f"{p['fwd_tflops']:6.0f}/{p['bwd_tflops']:<6.0f} {p['ratio_fwd']:5.2f}/{p['ratio_bwd']:<5.2f}"
            return f"{'n/a' if 'na' in p else 'error':>13} {'':>11}"
        print(f"{case['case']:<26} {case['mask']:<20} {S:>6} {hq:>3}:{hkv:<2} {d:>4} | "
              f"{ours_fwd:6.0f}/{ours_bwd:<6.0f} | {cell(row['sdpa_flash'])} | "
              f"{cell(row['sdpa_cudnn'])} | {cell(row.get('flex', {'na': 1}))}", flush=True)
        for name in ("sdpa_flash", "sdpa_cudnn", "flex"):
            if "error" in row.get(name, {}):
                print(f"#   {name}: {row[name]['error']}")
        results.append(row)
        del q, k, v, dout
        torch.cuda.empty_cache()
    print("# ratio = ours / peer (TFLOP/s, same FLOP count from the mask area); f/b = forward/backward")
    if args.out:
        meta = {"card": card, "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                "ours": args.ours, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "argv": sys.argv, "warmup": args.warmup, "iters": args.iters}
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"metadata": meta, "cases": results}, f, indent=2)
        os.rename(tmp, args.out)
        print(f"# Wrote {args.out}")


if __name__ == "__main__":
    main()
