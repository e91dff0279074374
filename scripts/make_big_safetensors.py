#!/usr/bin/env python3
"""Writes a safetensors file of random F32 tensors (for the load benchmark; no weights are
committed). Usage: make_big_safetensors.py OUT SIZE_MIB"""
import json, os, struct, sys

out, mib = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
rows, cols = 4096, 4096  # 64 MiB per tensor
n = max(1, mib // 64)
header, off = {}, 0
for i in range(n):
    size = rows * cols * 4
    header[f"layer.{i}.weight"] = {"dtype": "F32", "shape": [rows, cols], "data_offsets": [off, off + size]}
    off += size
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    block = os.urandom(1 << 20)
    for _ in range(off >> 20):
        f.write(block)
print(f"wrote {out}: {n} tensors, {off / 2**20:.0f} MiB")
