#!/usr/bin/env python3
"""Goldens of last-token pooling on the real Qwen2.5-Coder-0.5B-Instruct weights
(tests/decoder_retrieval.rs, `qwen_last_token_matches_hf`, opt-in).

The model folder is models/qwen2.5-coder-0.5b-instruct as `GLLM_FETCH_QWEN=1 bash
scripts/fetch-models.sh` leaves it (the GGUF converted to f16 safetensors by `gllm convert`).
transformers' own `Qwen2Model` runs it in float32 on the CPU; the recipe is Qwen3-Embedding's
(https://huggingface.co/Qwen/Qwen3-Embedding-0.6B): the text's token ids with `<|endoftext|>`
appended (the base Qwen2.5 tokenizer adds nothing), padding on the left, the hidden state of
the last position after the final norm, L2-normalised. Queries take "Instruct: {task}\\nQuery:".

Usage (from the repository root):
    target/pyenv/bin/python scripts/make_qwen_last_token_goldens.py
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoTokenizer, Qwen2Model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models/qwen2.5-coder-0.5b-instruct")
OUT = os.path.join(ROOT, "tests/goldens/qwen2.5-coder-0.5b-last-token.json")
TASK = "Given a web search query, retrieve relevant passages that answer the query"
QUERY_PROMPT = f"Instruct: {TASK}\nQuery:"
TEXTS = [
    "def quicksort(xs):\n    return xs if len(xs) < 2 else quicksort([x for x in xs[1:] if x < xs[0]]) + [xs[0]] + quicksort([x for x in xs[1:] if x >= xs[0]])",
    "The capital of China is Beijing.",
    "Zürich liegt am Zürichsee; 東京 is Tokyo.",
    "a",
]
QUERIES = ["how do I sort a list in python", "What is the capital of China?"]


def main():
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = Qwen2Model.from_pretrained(MODEL, torch_dtype=torch.float32, attn_implementation="eager").eval()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")

    def embed(texts):
        rows = [tok(t, add_special_tokens=True)["input_ids"] for t in texts]
        rows = [r if r and r[-1] == eos else r + [eos] for r in rows]
        n = max(len(r) for r in rows)
        ids = torch.tensor([[eos] * (n - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows])
        with torch.no_grad():
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]
        return rows, torch.nn.functional.normalize(h, p=2, dim=1).tolist()

    cases = []
    rows, e = embed(TEXTS)
    cases.append({"prompt": None, "texts": TEXTS, "input_ids": rows, "embeddings": e})
    rows, e = embed([QUERY_PROMPT + q for q in QUERIES])
    cases.append({"prompt": QUERY_PROMPT, "texts": QUERIES, "input_ids": rows, "embeddings": e})
    out = {
        "about": "scripts/make_qwen_last_token_goldens.py: transformers Qwen2Model float32 CPU on models/qwen2.5-coder-0.5b-instruct, "
                 "last-token pooling (Qwen3-Embedding recipe), L2-normalised",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "eos_id": eos,
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
