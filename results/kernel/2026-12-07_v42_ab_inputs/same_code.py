#!/usr/bin/env python3
"""Which kernels of two cubins have the same machine code (their .text sections byte for byte), read
with sass_waits.py's ELF reader: a kernel whose code is another build's runs as that build's ran.

Usage: same_code.py A.cubin B.cubin   (cubins as build_v41.sh compiles them)"""
import importlib.util
import os
import sys

spec = importlib.util.spec_from_file_location(
    "sass_waits", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "2026-12-07_v41_ab_inputs", "sass_waits.py"))
sass_waits = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sass_waits)
a, b = (sass_waits.text_sections(p) for p in sys.argv[1:3])
for name in sorted(set(a) | set(b)):
    print(("same " if a.get(name) == b.get(name) else "DIFF ") + name)
