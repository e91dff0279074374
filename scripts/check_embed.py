"""Independent parity check of `gllm embed` on any sentences, on the GPU and on the CPU backend.

Reference: HF `tokenizers` (Python) for the token ids and a float64 numpy BERT forward pass
(embeddings, 6 encoder layers, mean pooling, L2 normalisation as the model's
sentence-transformers config says) read straight from model.safetensors. Checks token ids
exactly and cosine similarity >= 0.9999 for every sentence.

    python3 scripts/check_embed.py GLLM_BINARY MODEL_DIR [TEXT...]
Needs numpy and tokenizers (scripts/test.sh makes a venv with them).
"""
import json, math, struct, subprocess, sys

import numpy as np
from tokenizers import Tokenizer

gllm, model = sys.argv[1], sys.argv[2]
texts = sys.argv[3:] or [
    "Ünïcödé, accents and CJK: 東京は日本の首都です。 Emoji 🚀🔥 too.",
    "Short.",
    "A much longer passage " + "that keeps going and going " * 60 + "until the model must truncate it.",
    "   leading and trailing spaces   ",
    "Numbers 3.14159, dates 2026-11-25 and code: fn main() { println!(\"hi\"); }",
]

def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"]).astype(np.float64)
    return out

cfg = json.load(open(f"{model}/config.json"))
W = load_safetensors(f"{model}/model.safetensors")
max_len = json.load(open(f"{model}/sentence_bert_config.json"))["max_seq_length"]
tok = Tokenizer.from_file(f"{model}/tokenizer.json")
tok.no_padding()
tok.enable_truncation(max_len)
erf = np.vectorize(math.erf)
H, nh, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]

def ln(x, p):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * W[p + ".weight"] + W[p + ".bias"]

def lin(x, p):
    return x @ W[p + ".weight"].T + W[p + ".bias"]

def embed(ids):
    n = len(ids)
    x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:n] \
        + W["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    d = H // nh
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}"
        q, k, v = (lin(x, f"{p}.attention.self.{m}").reshape(n, nh, d).transpose(1, 0, 2) for m in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        ctx = ((s / s.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, H)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        h = lin(x, f"{p}.intermediate.dense")
        x = ln(lin(0.5 * h * (1 + erf(h / math.sqrt(2))), f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    e = x.mean(0)
    return e / max(np.linalg.norm(e), 1e-12)

ok = True
# Both devices: the GPU (wgpu; lavapipe in CI) and the CPU backend.
for device in ("gpu", "cpu"):
    got = json.loads(subprocess.run([gllm, "embed", "--model", model, "--device", device, "--", *texts], check=True, capture_output=True, text=True).stdout)
    for i, t in enumerate(texts):
        ids = tok.encode(t).ids
        ids_ok = ids == got["token_ids"][i]
        ref = embed(np.array(ids))
        g = np.array(got["embeddings"][i], dtype=np.float64)
        cos = float(g @ ref / (np.linalg.norm(g) * np.linalg.norm(ref)))
        ok &= ids_ok and cos >= 0.9999
        print(f"{'ok ' if ids_ok and cos >= 0.9999 else 'BAD'} {got['device']:6} tokens={len(ids):3d} ids_match={ids_ok} cosine={cos:.8f}  {t[:60]!r}")
sys.exit(0 if ok else 1)
