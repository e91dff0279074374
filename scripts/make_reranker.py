"""Builds the synthetic cross-encoder checkpoint used to test the reranker path
(tests/goldens/reranker-synthetic-minilm.json): all-MiniLM-L6-v2's tensors under a `bert.`
prefix plus classifier.weight[0][i] = sin(0.37 (i+1)) (float64 math, stored float32) and
classifier.bias = 0.1, in the layout of cross-encoder/ms-marco-MiniLM-L-6-v2
(BertForSequenceClassification, num_labels 1). Its scores mean nothing about relevance.
    python3 scripts/make_reranker.py SRC_DIR OUT_DIR      (stdlib only)
"""
import json, math, os, shutil, struct, sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
with open(f"{src}/model.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()

cfg = json.load(open(f"{src}/config.json"))
hidden = cfg["hidden_size"]
tensors = []  # (name, dtype, shape, bytes)
for name, t in sorted(header.items()):
    if name == "__metadata__":
        continue
    a, b = t["data_offsets"]
    tensors.append(("bert." + name, t["dtype"], t["shape"], data[a:b]))
w = struct.pack(f"<{hidden}f", *[math.sin(0.37 * (i + 1)) for i in range(hidden)])
tensors.append(("classifier.weight", "F32", [1, hidden], w))
tensors.append(("classifier.bias", "F32", [1], struct.pack("<f", 0.1)))

hdr, off = {}, 0
for name, dtype, shape, b in tensors:
    hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
    off += len(b)
hj = json.dumps(hdr, separators=(",", ":")).encode()
hj += b" " * (-len(hj) % 8)
with open(f"{out}/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(hj)))
    f.write(hj)
    for _, _, _, b in tensors:
        f.write(b)

cfg.update({"architectures": ["BertForSequenceClassification"], "num_labels": 1, "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}})
json.dump(cfg, open(f"{out}/config.json", "w"), indent=2)
shutil.copy(f"{src}/tokenizer.json", f"{out}/tokenizer.json")
with open(f"{out}/README.md", "w") as f:
    f.write("SYNTHETIC cross-encoder for testing the reranker code path only: all-MiniLM-L6-v2 trunk and pooler\n"
            "plus a made-up head (classifier.weight[0][i] = sin(0.37 (i+1)), bias 0.1). Scores carry no relevance meaning.\n")
print(f"models: built synthetic reranker in {out} ({off / 1e6:.1f} MB of tensors)")
