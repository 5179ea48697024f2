#!/usr/bin/env bash
# Session 49: v46, the forward's masked tiles by bit masks (cand) against base, with two probes (nomask:
# the forward's masking skipped; noepi: the forward's epilogue reduced to freeing its buffer), all
# built at 16cb42c. OUT=$OUT bash build-gpu-carry/s49/call.sh, carry ["build-gpu-carry/s49"].
set -u
OUT=${OUT:-out}; mkdir -p "$OUT"
S=build-gpu-carry/s49
L=$OUT/s49.txt
[ -x $S/cand/magi-bench ] || tar xJf $S/bins.tar.xz -C $S
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit,temperature.gpu --format=csv >> $L
timeout 100 $S/cand/test_kernels_cuda --gtest_brief=1 > $OUT/cand_gpu_tests.log 2>&1
rc=$?
echo "cand gpu tests rc=$rc $(grep -E '^\[  (PASSED|FAILED)' $OUT/cand_gpu_tests.log | tr '\n' ' ') at $(el)s" >> $L
[ $rc -eq 0 ] || exit 1
timeout 150 $S/cand/magi-bench kernel --config $S/check_cand.json --out $OUT/check_cand.json > $OUT/check_cand.log 2>&1
echo "cand check rc=$? $(grep -E '#wrong|Cases' $OUT/check_cand.log | tr '\n' ' ') at $(el)s" >> $L
(command -v cuobjdump || ls /usr/local/cuda/bin/cuobjdump) >> $L 2>&1
CUOBJ=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
for v in base cand; do
  # Opcode counts of each forward kernel (static, whole function): what the masking compiled to.
  $CUOBJ -sass $S/$v/magi-bench 2>/dev/null | awk '/Function : /{f=$3} f ~ /flex_fwd/ && /\/\*[0-9a-f]+\*\//{op=$2; if (op ~ /^@/) op=$3; sub(/\..*/, "", op); n[f" "op]++; t[f]++}
    END{for (k in n) { split(k, a, " "); if (a[2] ~ /^(R2P|ISETP|FSEL|LOP3|MUFU|HGMMA)$/) print k, n[k] } for (f in t) print f, "total", t[f]}' | sort > $OUT/sass_$v.txt
  echo "sass $v: $(wc -l < $OUT/sass_$v.txt) lines at $(el)s" >> $L
done
run() {  # binary config
  echo "## $2 $1 at $(el)s" >> $L
  timeout 100 $S/$1/magi-bench kernel --config $S/$2.json --no-check 2>/dev/null | grep -E "$2/[0-9]+ " >> $L
}
for v in base cand nomask noepi base cand; do run $v ab_fwd; done
for v in base cand base cand; do run $v ab_fwd_gqa; done
echo "done at $(el)s" >> $L
