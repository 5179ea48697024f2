#!/usr/bin/env python3
"""Where the forward's tile loop waits, read from a cubin without cuobjdump (this machine has
none). Decodes just enough sm_90a SASS: the base opcode of each 128-bit instruction from its low
12 bits (sass_opcodes.json, learned from ncu's SASS listing of 60a547a's d 128 forward kernels,
whose cubin, compiled here with the build's flags, has the same 4,256 and 5,288 instructions), and
for WARPGROUP whether it is DEPBAR (bit 80) and its count (bits 72-74) or ARRIVE. For each wait
for all but the newest wgmma group (DEPBAR 1) followed by a wait for all (DEPBAR 0), prints the
softmax's instructions between the two and after the second, up to the next HGMMA or BAR.

Usage: sass_waits.py KERNELS.cubin [NAME_SUBSTRING]
(the cubin: nvcc ... -cubin kernels/cuda/flex_attention.cu with the build's flags, v41's build_v41.sh)"""
import collections
import json
import os
import struct
import sys

OPS = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sass_opcodes.json")))


def text_sections(path):  # ELF64: {kernel name: code}
    data = open(path, "rb").read()
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = secs[shstrndx][4]
    out = {}
    for name, _type, _flags, _addr, off, size in secs:
        end = data.index(b"\0", strtab + name)
        s = data[strtab + name:end].decode()
        if s.startswith(".text."):
            out[s[6:]] = data[off:off + size]
    return out


def decode(x):
    op = OPS.get(str(x & 0xFFF), "?")
    if op == "WARPGROUP":
        return "DEPBAR%d" % ((x >> 72) & 0x7) if (x >> 80) & 1 else "ARRIVE"
    return op


def main():
    want = sys.argv[2] if len(sys.argv) > 2 else "flex_fwd_kernel"
    for name, code in text_sections(sys.argv[1]).items():
        if "flex_fwd_kernel" not in name or want not in name:
            continue
        ins = [decode(int.from_bytes(code[i:i + 16], "little")) for i in range(0, len(code), 16)]
        print(f"== {name} ({len(ins)} instructions)")
        for i, op in enumerate(ins):
            if op != "DEPBAR1":
                continue
            j = i + 1
            while j < len(ins) and not ins[j].startswith("DEPBAR") and ins[j] != "HGMMA":
                j += 1
            if j >= len(ins) or ins[j] != "DEPBAR0":
                continue
            k = j + 1
            while k < len(ins) and ins[k] not in ("HGMMA", "BAR"):
                k += 1
            show = lambda c: " ".join(f"{o}:{c[o]}" for o in ("FMNMX", "MUFU", "FFMA", "FADD", "FMUL", "F2FP") if c[o])
            print(f"  DEPBAR 1 @{i} .. DEPBAR 0 @{j} ({j - i - 1}): {show(collections.Counter(ins[i + 1:j]))}"
                  f"  | after ({k - j - 1}): {show(collections.Counter(ins[j + 1:k]))}")


if __name__ == "__main__":
    main()
