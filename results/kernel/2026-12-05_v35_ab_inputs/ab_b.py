# Pairs the backward TFLOP/s of kernel JSONs named <cfg>_<variant>_<round>.json in a folder: per case, each variant's
# rounds and mean(variant) / mean(base).
import collections, glob, json, os, sys
d = sys.argv[1]
vals = collections.defaultdict(lambda: collections.defaultdict(list))
for f in sorted(glob.glob(os.path.join(d, "k*_*_*.json"))):
    cfg, var, _ = os.path.basename(f)[:-5].split("_")
    for c in json.load(open(f))["cases"]:
        k = c["case_key"] and json.loads(c["case_key"])
        m = k["mask"]["type"]
        key = (cfg, m, k["sequence"]["total_tokens"], k["model"]["heads_q"], k["model"]["head_dim"])
        if c.get("bwd_tflops_per_gpu"): vals[key][var].append(c["bwd_tflops_per_gpu"])
full = {}
for key in sorted(vals):
    v = vals[key]
    base = sum(v["base"]) / len(v["base"]) if v.get("base") else None
    line = f"{str(key):>58}"
    for var in sorted(v, key=lambda s: (s != "base", s)):
        mean = sum(v[var]) / len(v[var])
        line += f" | {var} " + " ".join(f"{x:.0f}" for x in v[var])
        if var != "base" and base: line += f" {mean / base:.3f}"
    print(line)
# share of full per variant
for key in sorted(vals):
    if key[1] == "full": full[(key[0], key[2])] = {var: sum(x) / len(x) for var, x in vals[key].items()}
for key in sorted(vals):
    f = full.get((key[0], key[2]))
    if not f or key[1] == "full": continue
    print(f"share of full {str(key):>58}: " + " ".join(f"{var} {sum(x)/len(x)/f[var]:.3f}" for var, x in vals[key].items() if var in f))
