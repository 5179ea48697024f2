#!/usr/bin/env bash
# Session 32, call 2: main's kernel (s32, ed12817) against base (c0a57b7's, s30/bins.tar.xz) on the
# two catalogue configs without the check, rounds alternating: call 1b's H200 record showed 16:16
# shared question's backward at 379 TFLOP/s, against 469 in c0a57b7's H100 record.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
(cd build-gpu-carry/s30 && tar xJf bins.tar.xz base)
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit --format=csv > "$OUT/card.txt"
for r in ${ROUNDS:-1 2 3}; do
  for v in base main; do
    B=build-gpu-carry/s32; [ $v = base ] && B=build-gpu-carry/s30/base
    for c in kernel_catalogue kernel_catalogue_gqa; do
      [ $(( $(date +%s) - t0 )) -lt ${BUDGET:-400} ] || break
      $B/magi-bench kernel --config configs/$c.json --no-check --out $OUT/${c}_${v}_$r.json > /dev/null 2>&1
      echo "$c $v $r rc=$? at $(($(date +%s) - t0))s"
    done
  done
done
python3 - "$OUT" <<'PY' | tee "$OUT/ab.txt"
import json, glob, sys, collections
t = collections.defaultdict(list)
for f in sorted(glob.glob(sys.argv[1] + "/kernel_catalogue*_*_*.json")):
    c, v, r = f.rsplit("/", 1)[1][:-5].rsplit("_", 2)
    d = json.load(open(f))
    rows = [x for x in d.values() if isinstance(x, list) and x and isinstance(x[0], dict) and "fwd_tflops_per_gpu" in x[0]][0]
    for x in rows:
        t[(c, x["details"]["config"]["mask"]["type"], v)].append((round(x["fwd_tflops_per_gpu"]), round(x["bwd_tflops_per_gpu"])))
for (c, m, v), xs in sorted(t.items()):
    print(f"{c:22s} {m:22s} {v:5s} " + " ".join(f"{a}/{b}" for a, b in xs))
PY
(cd "$OUT" && tar cJf all.tar.xz --exclude=all.tar.xz . && find . -type f ! -name all.tar.xz ! -name ab.txt -delete)
