#!/usr/bin/env python3
"""Writes tests/goldens/ggml-dequant.json: random blocks of the GGUF block formats added in
the quant-formats branch (q5_1, q2_K, q3_K, q5_K, iq4_nl), dequantized by the `gguf` Python
package (llama.cpp's gguf-py, a numpy port of ggml's dequantize_row_*), and q5_1 blocks
quantized by its port of quantize_row_q5_1_ref. Values are stored as f32 bit patterns so the
Rust test (`dequantize_matches_gguf_py`) compares them exactly.

Pinned: pip install gguf==0.19.0 (numpy 2.x). Run once from the repository root:
    python3 scripts/make_quant_goldens.py
"""
import json

import numpy as np
from gguf import GGMLQuantizationType as T, quants

rng = np.random.default_rng(20261207)


def f16_bytes(v):
    return np.array(v, dtype=np.float16).tobytes()


def random_block(name, size):
    """Random bytes with the f16 scale fields set to finite values of a sensible range."""
    b = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    d = float(rng.uniform(1e-3, 0.1) * rng.choice([-1.0, 1.0]))
    m = float(rng.uniform(1e-3, 0.1))
    if name == "q5_1":
        b[0:2], b[2:4] = f16_bytes(abs(d)), f16_bytes(-m)
    elif name == "q2_K":
        b[80:82], b[82:84] = f16_bytes(abs(d)), f16_bytes(m)
    elif name == "q3_K":
        b[108:110] = f16_bytes(d)
    elif name == "q5_K":
        b[0:2], b[2:4] = f16_bytes(abs(d)), f16_bytes(m)
    elif name == "iq4_nl":
        b[0:2] = f16_bytes(d)
    return bytes(b)


FORMATS = [("q5_1", T.Q5_1, 24), ("q2_K", T.Q2_K, 84), ("q3_K", T.Q3_K, 110), ("q5_K", T.Q5_K, 176), ("iq4_nl", T.IQ4_NL, 18)]

out = {"generator": "scripts/make_quant_goldens.py, gguf 0.19.0", "dequantize": [], "quantize": []}
for name, qt, size in FORMATS:
    for _ in range(3):
        blk = random_block(name, size)
        vals = quants.dequantize(np.frombuffer(blk, dtype=np.uint8), qt).astype(np.float32)
        out["dequantize"].append({"format": name, "block": blk.hex(), "f32_bits": [int(v) for v in vals.view(np.uint32)]})

# q5_1 quantize: weights-like values (small with outliers), 4 blocks.
x = rng.standard_normal(128).astype(np.float32) ** 3
x[::37] *= 8
q = quants.quantize(x, T.Q5_1)
out["quantize"].append({"format": "q5_1", "f32_bits": [int(v) for v in x.view(np.uint32)], "blocks": q.tobytes().hex()})

# One case per line.
with open("tests/goldens/ggml-dequant.json", "w") as f:
    f.write('{"generator": %s,\n' % json.dumps(out["generator"]))
    for key, end in (("dequantize", ",\n"), ("quantize", "\n")):
        f.write('"%s": [\n' % key + ",\n".join(json.dumps(c) for c in out[key]) + "\n]" + end)
    f.write("}\n")
print("wrote tests/goldens/ggml-dequant.json")
